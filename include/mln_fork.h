/*
 * melon-ipc: mln_fork.h, Melon's header name for
 * the process API (mln_fork_t, mln_fork_*, mln_ipc_*_send_prepare).
 *
 * Everything is declared in mln_ipc.h (generated from the Rust sources); this file only
 * defines Melon's include guard and includes it, so sources written for Melon compile
 * unchanged whichever of Melon's header names they include, in any order.
 */
#ifndef __MLN_FORK_H
#define __MLN_FORK_H
#include "mln_ipc.h"
#endif
