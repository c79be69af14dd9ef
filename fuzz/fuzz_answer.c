/*-------------------------------------------------------------------------
 *
 * fuzz_answer.c
 *	  libFuzzer target: the body of an API answer.
 *
 * The input is a body as collect_answer keeps it (any bytes, then a NUL
 * terminator).  It goes through what xplenty_parse_answer in src/answer.c
 * does before jsonb_in, with the project's own code in src/answer_text.c
 * and PostgreSQL's frontend JSON parser (libpgcommon) standing in for the
 * server's, as in a UTF8 database, where pg_any_to_server changes nothing:
 *
 *	1. xplenty_answer_snippet, which any failure quotes;
 *	2. xplenty_check_answer_text: zero bytes, then UTF-8;
 *	3. xplenty_check_answer_json: the syntax check;
 *	4. xplenty_scan_api_time, on a short input, as on a "created_at".
 *
 * And one oracle: an answer the check accepts is then given to jsonb_in,
 * which decodes every escape and raises an ERROR for what it cannot hold.
 * So the same text is parsed again the way jsonb_in's lexer does it (with
 * escapes decoded); if that fails, the check has let through an answer
 * that ends in an ERROR instead of a reported problem, and the target
 * aborts.  Numbers jsonb_in's numeric type cannot hold (1e131072, say) and
 * nesting past max_stack_depth also end in an ERROR there; those are not
 * modelled here (see README.md).
 *
 * The frontend parser has no stack depth check (the server's calls
 * check_stack_depth): on an 8 MB stack it overflows at about 58,000
 * nested arrays.  Inputs nested deeper than the server would ever parse
 * are therefore not given to it; see MAX_DEPTH.
 *
 * fuzz/fuzz_answer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "answer_text.h"
#include "fuzz_check.h"

/*
 * The server stops parsing with "stack depth limit exceeded" at between
 * 12,000 and 15,000 nested arrays (max_stack_depth = 2MB, measured on
 * PostgreSQL 15.20); deeper input is only counted, not parsed.
 */
#define MAX_DEPTH 20000

static const char *
json_error_name(JsonParseErrorType rc)
{
	switch (rc)
	{
		case JSON_SUCCESS:
			return "JSON_SUCCESS";
		case JSON_ESCAPING_INVALID:
			return "JSON_ESCAPING_INVALID";
		case JSON_ESCAPING_REQUIRED:
			return "JSON_ESCAPING_REQUIRED";
		case JSON_UNICODE_CODE_POINT_ZERO:
			return "JSON_UNICODE_CODE_POINT_ZERO (\\u0000)";
		case JSON_UNICODE_ESCAPE_FORMAT:
			return "JSON_UNICODE_ESCAPE_FORMAT";
		case JSON_UNICODE_HIGH_ESCAPE:
			return "JSON_UNICODE_HIGH_ESCAPE";
		case JSON_UNICODE_HIGH_SURROGATE:
			return "JSON_UNICODE_HIGH_SURROGATE";
		case JSON_UNICODE_LOW_SURROGATE:
			return "JSON_UNICODE_LOW_SURROGATE";
		default:
			return "another JSON error";
	}
}

/*
 * nesting_depth
 *		How deep arrays and objects nest in the text, strings skipped.
 */
static int
nesting_depth(const char *s, size_t len)
{
	int			depth = 0;
	int			deepest = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
			deepest = Max(deepest, ++depth);
		else if (c == ']' || c == '}')
			depth--;
	}
	return deepest;
}

static void
check_snippet(const uint8_t *data, size_t size)
{
	char	   *snippet = xplenty_answer_snippet((const char *) data, size);
	size_t		n = strlen(snippet);

	CHECK(n <= 203);
	CHECK(n == Min(size, 200) + (size > 200 ? 3 : 0));
	for (size_t i = 0; i < n; i++)
		CHECK(snippet[i] >= 0x20 && snippet[i] < 0x7f);
	pfree(snippet);
}

/*
 * The promise: true only for YYYY-MM-DDTHH:MM:SS, digits exactly there,
 * an optional fraction, then "Z" or "+00:00"; and only for a date that
 * exists (timegm, which normalises 31 February to 3 March, says which).
 */
static void
check_time(const char *text)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
	struct pg_tm tm;
	struct tm	t = {0};
	const char *rest;

	if (!xplenty_scan_api_time(text, &tm))
		return;
	for (int i = 0; i < 19; i++)
	{
		if (pattern[i] == 'd')
			CHECK(text[i] >= '0' && text[i] <= '9');
		else
			CHECK(text[i] == pattern[i]);
	}
	rest = text + 19;
	if (*rest == '.')
		for (rest++; *rest >= '0' && *rest <= '9'; rest++)
			;
	CHECK(strcmp(rest, "Z") == 0 || strcmp(rest, "+00:00") == 0);
	CHECK(tm.tm_year == atoi(text));
	CHECK(tm.tm_mon == atoi(text + 5));
	CHECK(tm.tm_mday == atoi(text + 8));
	CHECK(tm.tm_hour == atoi(text + 11));
	CHECK(tm.tm_min == atoi(text + 14));
	CHECK(tm.tm_sec == atoi(text + 17));
	CHECK(tm.tm_mon >= 1 && tm.tm_mon <= 12);
	CHECK(tm.tm_hour >= 0 && tm.tm_hour <= 23);
	CHECK(tm.tm_min >= 0 && tm.tm_min <= 59);
	CHECK(tm.tm_sec >= 0 && tm.tm_sec <= 60);
	t.tm_year = tm.tm_year - 1900;
	t.tm_mon = tm.tm_mon - 1;
	t.tm_mday = tm.tm_mday;
	t.tm_hour = 12;
	(void) timegm(&t);
	CHECK(t.tm_mon == tm.tm_mon - 1 && t.tm_mday == tm.tm_mday);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	XplentyAnswerText text_ok;
	char	   *text;
	JsonLexContext *lex;
	JsonParseErrorType rc;

	check_snippet(data, size);

	/* collect_answer keeps the body NUL-terminated. */
	text = input_text(data, size);

	if (size < 64)
		check_time(text);

	text_ok = xplenty_check_answer_text(text, size);
	CHECK((text_ok == XPLENTY_ANSWER_TEXT_ZERO_BYTE) ==
		  (memchr(data, '\0', size) != NULL));
	if (text_ok != XPLENTY_ANSWER_TEXT_OK)
	{
		free(text);
		return 0;
	}
	CHECK(strlen(text) == size);

	if (nesting_depth(text, size) > MAX_DEPTH)
	{
		free(text);
		return 0;
	}

	rc = xplenty_check_answer_json(text, PG_UTF8, &lex);
	if (lex->strval != NULL)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);

	if (rc == JSON_SUCCESS)
	{
		/* What jsonb_in's lexer will make of it. */
		JsonLexContext *full;
		JsonParseErrorType rc2;

		full = makeJsonLexContextCstringLen(text, size, PG_UTF8, true);
		rc2 = pg_parse_json(full, &nullSemAction);
		pfree(full->strval->data);
		pfree(full->strval);
		pfree(full);
		if (rc2 != JSON_SUCCESS)
		{
			fprintf(stderr, "fuzz_answer: the answer check accepted what "
					"jsonb_in refuses with an ERROR: %s\n",
					json_error_name(rc2));
			abort();
		}
	}

	free(text);
	return 0;
}
