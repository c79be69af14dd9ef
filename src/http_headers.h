/*-------------------------------------------------------------------------
 *
 * http_headers.h
 *	  Reading what the API's HTTP answers say outside their body.
 *
 * src/http_headers.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_HTTP_HEADERS_H
#define XPLENTY_HTTP_HEADERS_H

/* Headers we act on are short; a longer line cannot be one of them. */
#define XPLENTY_HEADER_LINE_MAX 1024

typedef enum XplentyHeaderKind
{
	XPLENTY_HEADER_OTHER,		/* a header we do not act on */
	XPLENTY_HEADER_STATUS,		/* a status line: a new answer begins */
	XPLENTY_HEADER_RATELIMIT_REMAINING,
	XPLENTY_HEADER_RATELIMIT_LIMIT,
	XPLENTY_HEADER_LINK
} XplentyHeaderKind;

/* What xplenty_answer_room says of a piece of body to append. */
typedef enum XplentyAnswerRoom
{
	XPLENTY_ANSWER_FITS,		/* the buffer has room for it */
	XPLENTY_ANSWER_GROW,		/* grow the buffer to *newcap first */
	XPLENTY_ANSWER_TOO_LARGE	/* the answer would pass its limit */
} XplentyAnswerRoom;

extern XplentyHeaderKind xplenty_classify_header(const char *data, size_t len,
												 char *line,
												 const char **value);
extern long xplenty_parse_header_number(const char *value);
extern XplentyAnswerRoom xplenty_answer_room(size_t answer_len,
											 size_t answer_cap,
											 size_t answer_limit,
											 size_t len, size_t *newcap);

#endif							/* XPLENTY_HTTP_HEADERS_H */
