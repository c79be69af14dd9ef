/*-------------------------------------------------------------------------
 *
 * quick_json.h
 *	  A one-pass reader for the plain JSON that the API answers with.
 *
 * src/quick_json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_QUICK_JSON_H
#define XPLENTY_QUICK_JSON_H

/* Containers nested deeper than this are left to PostgreSQL's parser. */
#define XPLENTY_QUICK_JSON_MAX_DEPTH 64

/* Number tokens longer than this are left to PostgreSQL's parser. */
#define XPLENTY_QUICK_JSON_MAX_NUMBER 40

/* The kinds of scalar the reader hands on. */
typedef enum XplentyJsonScalar
{
	XPLENTY_JSON_STRING,		/* text: the decoded string */
	XPLENTY_JSON_NUMBER,		/* text: the token, never an exponent */
	XPLENTY_JSON_TRUE,
	XPLENTY_JSON_FALSE,
	XPLENTY_JSON_NULL
} XplentyJsonScalar;

/*
 * What the reader calls as it goes.  Strings (keys and values) are handed
 * on decoded, as a pointer into the text and a length, not NUL-terminated:
 * they stay valid as long as the text does.
 */
typedef struct XplentyJsonHandlers
{
	void		(*begin) (void *arg, bool is_object);
	void		(*end) (void *arg, bool is_object);
	void		(*key) (void *arg, const char *key, size_t len);
	void		(*scalar) (void *arg, XplentyJsonScalar kind,
							const char *text, size_t len);
} XplentyJsonHandlers;

extern bool xplenty_quick_json_read(char *text, size_t len,
									const XplentyJsonHandlers *handlers,
									void *arg);

#endif							/* XPLENTY_QUICK_JSON_H */
