/*-------------------------------------------------------------------------
 *
 * answer_text.h
 *	  Checks on the text of the API's answers that need no server.
 *
 * src/answer_text.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_ANSWER_TEXT_H
#define XPLENTY_ANSWER_TEXT_H

#include "common/jsonapi.h"
#include "pgtime.h"

/* What is wrong with an answer's text before it is even read as JSON. */
typedef enum XplentyAnswerText
{
	XPLENTY_ANSWER_TEXT_OK,
	XPLENTY_ANSWER_TEXT_ZERO_BYTE,
	XPLENTY_ANSWER_TEXT_NOT_UTF8
} XplentyAnswerText;

extern XplentyAnswerText xplenty_check_answer_text(const char *answer,
												   size_t len);
extern JsonParseErrorType xplenty_check_answer_json(char *text, int encoding,
													 JsonLexContext **lex);
extern char *xplenty_answer_snippet(const char *answer, size_t len);
extern bool xplenty_scan_api_time(const char *text, struct pg_tm *tm);

#endif							/* XPLENTY_ANSWER_TEXT_H */
