/*-------------------------------------------------------------------------
 *
 * answer_jsonb.h
 *	  Build the jsonb of an ordinary answer in one pass.
 *
 * src/answer_jsonb.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_ANSWER_JSONB_H
#define XPLENTY_ANSWER_JSONB_H

#include "utils/jsonb.h"

extern Jsonb *xplenty_quick_answer_jsonb(const char *answer, size_t len);

#endif							/* XPLENTY_ANSWER_JSONB_H */
