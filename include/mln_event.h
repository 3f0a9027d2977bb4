/*
 * melon-ipc: mln_event.h, Melon's header name for
 * the event loop API (mln_event_t, M_EV_*, mln_event_*).
 *
 * Everything is declared in mln_ipc.h (generated from the Rust sources); this file only
 * defines Melon's include guard and includes it, so sources written for Melon compile
 * unchanged whichever of Melon's header names they include, in any order.
 */
#ifndef __MLN_EVENT_H
#define __MLN_EVENT_H
#include "mln_ipc.h"
#endif
