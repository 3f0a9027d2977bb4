/*
 * melon-ipc: mln_connection.h, Melon's header name for
 * the connection type (mln_tcp_conn_t, M_C_*, mln_tcp_conn_* macros).
 *
 * Everything is declared in mln_ipc.h (generated from the Rust sources); this file only
 * defines Melon's include guard and includes it, so sources written for Melon compile
 * unchanged whichever of Melon's header names they include, in any order.
 */
#ifndef __MLN_CONNECTION_H
#define __MLN_CONNECTION_H
#include "mln_ipc.h"
#endif
