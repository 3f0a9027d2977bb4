/*
 * melon-ipc: mln_framework.h, Melon's header name for
 * the framework entry point (struct mln_framework_attr, mln_framework_init).
 *
 * Everything is declared in mln_ipc.h (generated from the Rust sources); this file only
 * defines Melon's include guard and includes it, so sources written for Melon compile
 * unchanged whichever of Melon's header names they include, in any order.
 */
#ifndef __MLN_FRAMEWORK_H
#define __MLN_FRAMEWORK_H
#include "mln_ipc.h"
#endif
