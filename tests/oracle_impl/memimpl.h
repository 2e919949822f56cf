/* memimpl: a C implementation of memspec's PageManager, kernel directory and
 * KernelHeap (the seed's sections 1-3), written for the oracle's own test.
 * It replies as model/page_manager.py, model/virtual_memory.py and
 * model/kernel_heap.py do; shim.c serves it over proofs/oracle/PROTOCOL.md with
 * the implementers' kit (kit/memspec_oracle.h), which holds every piece of the
 * protocol: this file only names the kit's types as memimpl.c has always
 * called them. */
#ifndef MEMIMPL_H
#define MEMIMPL_H

#include "../../kit/memspec_oracle.h"

#include <stdio.h> /* memimpl.c's system headers, read before the names below */
#include <stdlib.h>
#include <string.h>

/* memimpl.c's names for the kit's request arguments, results and buffers. */
#define arg mo_arg
#define args mo_args
#define result mo_result
#define buf mo_buf
#define ARG_INT MO_INT
#define ARG_BOOL MO_BOOL
#define ARG_STR MO_STR
#define ARG_OTHER MO_OTHER
#define RES_BOOL MO_RES_BOOL
#define RES_INT MO_RES_INT
#define buf_put mo_buf_put
#define buf_printf mo_buf_printf
#define put_array mo_buf_u32s
#define arg_named mo_arg_named

/* Run an operation of a manager (unknown op or wrong arg names: false,
 * ERROR_INVALID_PARAMETER). */
struct result mem_call(const char *manager, const char *op, const struct args *a);
/* Append the JSON object an observation yields; 0 for an unknown observation. */
int mem_observe(const char *name, const struct args *a, struct buf *out);

#endif
