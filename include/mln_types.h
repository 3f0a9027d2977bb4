/*
 * melon-ipc: mln_types.h, Melon's header name for
 * the integer typedefs (mln_u32_t, mln_size_t, ...).
 *
 * Everything is declared in mln_ipc.h (generated from the Rust sources); this file only
 * defines Melon's include guard and includes it, so sources written for Melon compile
 * unchanged whichever of Melon's header names they include, in any order.
 */
#ifndef __MLN_TYPES_H
#define __MLN_TYPES_H
#include "mln_ipc.h"
#endif
