/*-------------------------------------------------------------------------
 *
 * fuzz_check.h
 *	  CHECK(cond), with which every fuzz target fails loudly on a broken
 *	  promise: a wrong answer is to stop a run as a crash does.
 *
 * It names the target (by its source file) and the condition, and aborts,
 * which libFuzzer reports and keeps the input of.
 *
 * fuzz/fuzz_check.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_FUZZ_CHECK_H
#define XPLENTY_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s: check failed: %s\n", __FILE__, #cond); \
			abort(); \
		} \
	} while (0)

#endif							/* XPLENTY_FUZZ_CHECK_H */
