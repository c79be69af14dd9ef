/*-------------------------------------------------------------------------
 *
 * fuzz_check.h
 *	  CHECK(cond), with which every fuzz target fails loudly on a broken
 *	  promise: a wrong answer is to stop a run as a crash does; and
 *	  input_text, the input as the C string the code under test reads.
 *
 * CHECK names the target (by its source file) and the condition, and
 * aborts, which libFuzzer reports and keeps the input of.
 *
 * fuzz/fuzz_check.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_FUZZ_CHECK_H
#define XPLENTY_FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s: check failed: %s\n", __FILE__, #cond); \
			abort(); \
		} \
	} while (0)

/*
 * input_text
 *		A NUL-terminated copy of the input, to be freed with free(): a
 *		writable one, for code that decodes in place.
 */
static inline char *
input_text(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);

	CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	return text;
}

#endif							/* XPLENTY_FUZZ_CHECK_H */
