/*-------------------------------------------------------------------------
 *
 * answer_text.c
 *	  Checks on the text of the API's answers that need no server.
 *
 * These are the first things done with an answer that came off the
 * network, before PostgreSQL's JSON and date code get to see it, and they
 * need nothing of the server: the fuzz targets in fuzz/ build this file as
 * it is, outside the server, against PostgreSQL's frontend libraries.
 *
 * src/answer_text.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "answer_text.h"

/* How much of a bad answer an error message shows. */
#define SNIPPET_LENGTH 200

/*
 * xplenty_check_answer_text
 *		Is the answer text that can be read at all: UTF-8, with no zero
 *		byte (which no PostgreSQL string can hold)?
 *
 * pg_encoding_verifymbstr is what the server's pg_verify_mbstr runs too,
 * with a length to compare instead of a bool.
 */
XplentyAnswerText
xplenty_check_answer_text(const char *answer, size_t len)
{
	if (memchr(answer, '\0', len) != NULL)
		return XPLENTY_ANSWER_TEXT_ZERO_BYTE;
	if (pg_encoding_verifymbstr(PG_UTF8, answer, (int) len) != (int) len)
		return XPLENTY_ANSWER_TEXT_NOT_UTF8;
	return XPLENTY_ANSWER_TEXT_OK;
}

/*
 * xplenty_check_answer_json
 *		Is the text, NUL-terminated and in the given encoding, JSON at all?
 *		JSON_SUCCESS or the parser's complaint, with *lex to give to
 *		json_errdetail.
 *
 * Escapes are decoded, as jsonb_in will decode them: an escape jsonb
 * cannot hold (\u0000, a lone surrogate such as \ude00) is then reported
 * here as a problem with the answer, rather than raised by jsonb_in as an
 * ERROR, which in the background worker would end the worker.
 */
JsonParseErrorType
xplenty_check_answer_json(char *text, int encoding, JsonLexContext **lex)
{
	*lex = makeJsonLexContextCstringLen(text, strlen(text), encoding, true);
	return pg_parse_json(*lex, &nullSemAction);
}

/*
 * xplenty_answer_snippet
 *		The start of an answer, fit to quote in an error message.
 *
 * Only printable ASCII is kept (anything else becomes "?"), so that an
 * answer in a broken or foreign encoding cannot make the message invalid.
 */
char *
xplenty_answer_snippet(const char *answer, size_t len)
{
	size_t		n = Min(len, SNIPPET_LENGTH);
	StringInfoData buf;

	initStringInfo(&buf);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) answer[i];

		if (c == '\n' || c == '\r' || c == '\t')
			appendStringInfoChar(&buf, ' ');
		else if (c >= 0x20 && c < 0x7f)
			appendStringInfoChar(&buf, (char) c);
		else
			appendStringInfoChar(&buf, '?');
	}
	if (len > n)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * scan_digits
 *		Read exactly n decimal digits; false if there are fewer.
 */
static bool
scan_digits(const char *s, int n, int *value)
{
	*value = 0;
	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		*value = *value * 10 + (s[i] - '0');
	}
	return true;
}

/*
 * days_in_month
 *		How many days the month (1 to 12) has in the (Gregorian) year.
 */
static int
days_in_month(int year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
		return 29;
	return days[month - 1];
}

/*
 * xplenty_scan_api_time
 *		Read the fields of a time the API wrote (UTC, "Z" or "+00:00", with
 *		or without a fraction of a second) into *tm; false if it is in no
 *		such form.  The fraction is dropped.
 *
 * Each field is read as exactly its digits: sscanf's %2d would also take
 * " 7", "+7" or "-7" (and an hour of -7 would then pass a range check
 * that only looks above).  The reading stops at the first character out
 * of place, so it never reads past the string's end.
 */
bool
xplenty_scan_api_time(const char *text, struct pg_tm *tm)
{
	const char *rest;

	memset(tm, 0, sizeof(*tm));
	if (!scan_digits(text, 4, &tm->tm_year) || text[4] != '-' ||
		!scan_digits(text + 5, 2, &tm->tm_mon) || text[7] != '-' ||
		!scan_digits(text + 8, 2, &tm->tm_mday) || text[10] != 'T' ||
		!scan_digits(text + 11, 2, &tm->tm_hour) || text[13] != ':' ||
		!scan_digits(text + 14, 2, &tm->tm_min) || text[16] != ':' ||
		!scan_digits(text + 17, 2, &tm->tm_sec))
		return false;
	rest = text + 19;
	if (*rest == '.')
	{
		rest++;
		while (*rest >= '0' && *rest <= '9')
			rest++;
	}
	if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)
		return false;
	if (tm->tm_mon < 1 || tm->tm_mon > 12 || tm->tm_mday < 1 ||
		tm->tm_mday > days_in_month(tm->tm_year, tm->tm_mon) ||
		tm->tm_hour > 23 || tm->tm_min > 59 || tm->tm_sec > 60)
		return false;
	return true;
}
