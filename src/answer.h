/*-------------------------------------------------------------------------
 *
 * answer.h
 *	  Reading the Xplenty API's answers: JSON bodies and error messages.
 *
 * src/answer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_ANSWER_H
#define XPLENTY_ANSWER_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "answer_text.h"

extern Jsonb *xplenty_parse_answer(const char *answer, size_t len,
								   char **problem);
extern char *xplenty_answer_message(const char *answer, size_t len);
extern Jsonb *xplenty_parse_job(const char *answer, size_t len,
								int64 *job_id, char **problem);
extern JsonbValue *xplenty_jsonb_member(Jsonb *object, const char *key);
extern bool xplenty_jsonb_get_int64(Jsonb *object, const char *key,
									int64 *value);
extern bool xplenty_jsonb_get_float8(Jsonb *object, const char *key,
									 double *value);
extern char *xplenty_jsonb_get_text(Jsonb *object, const char *key);
extern char *xplenty_format_api_time(TimestampTz ts);
extern bool xplenty_parse_api_time(const char *text, TimestampTz *result);

#endif							/* XPLENTY_ANSWER_H */
