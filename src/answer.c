/*-------------------------------------------------------------------------
 *
 * answer.c
 *	  Reading the Xplenty API's answers: JSON bodies and error messages.
 *
 * An answer is untrusted input that may be cut short, not JSON at all (the
 * API's own documented example of a job has trailing commas), not UTF-8,
 * or nested deeper than the stack allows.  Every function here either
 * returns a result or says what is wrong with the answer; none of them
 * lets a bad answer turn into a crash or an ERROR (see xplenty_parse_answer).
 *
 * src/answer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"

#include "answer.h"
#include "answer_jsonb.h"
#include "answer_text.h"

/* How long an API error message may be before it is cut. */
#define MESSAGE_LENGTH 500

/*
 * answer_to_server_encoding
 *		The answer as a NUL-terminated string in the database encoding, or
 *		NULL (with *problem set) if it is not valid UTF-8 text.
 */
static char *
answer_to_server_encoding(const char *answer, size_t len, char **problem)
{
	switch (xplenty_check_answer_text(answer, len))
	{
		case XPLENTY_ANSWER_TEXT_ZERO_BYTE:
			*problem = pstrdup("The answer contains a zero byte.");
			return NULL;
		case XPLENTY_ANSWER_TEXT_NOT_UTF8:
			*problem = pstrdup("The answer is not valid UTF-8.");
			return NULL;
		case XPLENTY_ANSWER_TEXT_OK:
			break;
	}
	/* pg_any_to_server would only verify it again. */
	if (GetDatabaseEncoding() == PG_UTF8)
		return pnstrdup(answer, len);
	return pg_any_to_server(answer, (int) len, PG_UTF8);
}

/*
 * parse_checked_answer
 *		The part of xplenty_parse_answer that can raise an ERROR: converting
 *		the answer, checking it, and jsonb_in.
 */
static Jsonb *
parse_checked_answer(const char *answer, size_t len, char **problem)
{
	char	   *text;
	JsonLexContext *lex;
	JsonParseErrorType rc;

	text = answer_to_server_encoding(answer, len, problem);
	if (text == NULL)
		return NULL;

	rc = xplenty_check_answer_json(text, GetDatabaseEncoding(), &lex);
	if (rc != JSON_SUCCESS)
	{
		*problem = psprintf("The answer is not valid JSON: %s",
							json_errdetail(rc, lex));
		return NULL;
	}

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(text)));
}

/*
 * xplenty_parse_answer
 *		Parse an answer's body as jsonb, or return NULL and say why not.
 *
 * The text is first checked with the JSON parser's error-returning entry
 * point, so that a malformed answer becomes a *problem to report in the
 * caller's words instead of jsonb_in's generic syntax error.
 *
 * What passes the check can still make PostgreSQL raise an ERROR: a number
 * numeric cannot hold (1e131072, or more than 16383 digits after the
 * point), nesting deeper than max_stack_depth allows (some 13,000 arrays),
 * a character the database encoding lacks.  Raised in the background
 * worker, which has no error handler of its own, such an ERROR would end
 * the worker and roll back all that its round recorded, and end it again
 * at the next poll of the same job.  So the parse runs in a subtransaction,
 * as a PL/pgSQL block with an EXCEPTION clause does, and an ERROR becomes
 * a *problem with the answer like any other; only a cancel or a shutdown
 * goes on as an ERROR.
 *
 * All of that is only for answers out of the ordinary.  An ordinary one,
 * which is every answer the API gives when things go right, is read in one
 * pass by xplenty_quick_answer_jsonb, which cannot raise such an ERROR.
 */
Jsonb *
xplenty_parse_answer(const char *answer, size_t len, char **problem)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Jsonb	   *volatile result = NULL;
	char	   *volatile said = NULL;

	*problem = NULL;
	if (len == 0)
	{
		*problem = pstrdup("The answer is empty.");
		return NULL;
	}
	if (len >= MaxAllocSize)
	{
		*problem = pstrdup("The answer is too large to parse.");
		return NULL;
	}

	result = xplenty_quick_answer_jsonb(answer, len);
	if (result != NULL)
		return result;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		char	   *checked = NULL;

		result = parse_checked_answer(answer, len, &checked);
		said = checked;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		result = NULL;
		said = psprintf("The answer cannot be read as jsonb: %s",
						edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	*problem = said;
	return result;
}

/*
 * xplenty_jsonb_member
 *		A member of a jsonb object, or NULL if it has none (or is not an
 *		object).
 */
JsonbValue *
xplenty_jsonb_member(Jsonb *object, const char *key)
{
	JsonbValue	k;

	if (!JB_ROOT_IS_OBJECT(object))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&object->root, JB_FOBJECT, &k);
}

/*
 * xplenty_jsonb_get_int64
 *		Fetch an integral number member of a jsonb object.
 */
bool
xplenty_jsonb_get_int64(Jsonb *object, const char *key, int64 *value)
{
	JsonbValue *v = xplenty_jsonb_member(object, key);
	Numeric		num;
	char	   *text;
	char	   *end;
	int64		result;

	if (v == NULL || v->type != jbvNumeric)
		return false;
	num = v->val.numeric;

	/* Integral and in range, or not an ID: numeric_int8 would ereport. */
	text = DatumGetCString(DirectFunctionCall1(numeric_out,
											   NumericGetDatum(num)));
	errno = 0;
	result = strtoi64(text, &end, 10);
	if (end == text || *end != '\0' || errno == ERANGE)
		return false;
	*value = result;
	return true;
}

/*
 * xplenty_jsonb_get_float8
 *		Fetch a number member of a jsonb object as a float8.
 */
bool
xplenty_jsonb_get_float8(Jsonb *object, const char *key, double *value)
{
	JsonbValue *v = xplenty_jsonb_member(object, key);
	Datum		d;

	if (v == NULL || v->type != jbvNumeric)
		return false;
	d = DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric));
	*value = DatumGetFloat8(d);
	return true;
}

/*
 * xplenty_jsonb_get_text
 *		Fetch a string member of a jsonb object, palloc'd, or NULL.
 */
char *
xplenty_jsonb_get_text(Jsonb *object, const char *key)
{
	JsonbValue *v = xplenty_jsonb_member(object, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * xplenty_parse_job
 *		Parse an answer that should be a job, and fetch its ID.
 */
Jsonb *
xplenty_parse_job(const char *answer, size_t len, int64 *job_id,
				  char **problem)
{
	Jsonb	   *job = xplenty_parse_answer(answer, len, problem);

	if (job == NULL)
		return NULL;
	if (!JB_ROOT_IS_OBJECT(job) || JB_ROOT_IS_SCALAR(job))
	{
		*problem = pstrdup("The answer is JSON but not an object.");
		return NULL;
	}
	if (!xplenty_jsonb_get_int64(job, "id", job_id) || *job_id <= 0)
	{
		*problem = pstrdup("The answer has no numeric job \"id\".");
		return NULL;
	}
	return job;
}

/*
 * append_errors
 *		Append the members of an error answer's "errors" array, if any.
 */
static void
append_errors(StringInfo buf, Jsonb *body)
{
	JsonbValue *v = xplenty_jsonb_member(body, "errors");
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	bool		first = true;

	if (v == NULL || v->type != jbvBinary)
		return;

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM && tok != WJB_VALUE)
			continue;
		appendStringInfoString(buf, first ? " (" : "; ");
		first = false;
		if (elem.type == jbvString)
			appendBinaryStringInfo(buf, elem.val.string.val,
								   elem.val.string.len);
		else if (elem.type == jbvBinary)
			appendStringInfoString(buf,
								   JsonbToCString(NULL, elem.val.binary.data,
												  elem.val.binary.len));
		else
			appendStringInfoString(buf, "?");
	}
	if (!first)
		appendStringInfoChar(buf, ')');
}

/*
 * xplenty_answer_message
 *		The "message" of an error answer, with its "errors" if there are
 *		any; or, if the answer is no such JSON, a snippet of it.
 */
char *
xplenty_answer_message(const char *answer, size_t len)
{
	char	   *problem;
	Jsonb	   *body;
	char	   *message;
	StringInfoData buf;

	if (len == 0)
		return pstrdup("(empty answer)");

	body = xplenty_parse_answer(answer, len, &problem);
	if (body == NULL || !JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body) ||
		(message = xplenty_jsonb_get_text(body, "message")) == NULL)
		return xplenty_answer_snippet(answer, len);

	initStringInfo(&buf);
	appendStringInfoString(&buf, message);
	append_errors(&buf, body);
	if (buf.len > MESSAGE_LENGTH)
	{
		int			cut = pg_mbcliplen(buf.data, buf.len, MESSAGE_LENGTH);

		buf.data[cut] = '\0';
		buf.len = cut;
		appendStringInfoString(&buf, "...");
	}
	return buf.data;
}

/*
 * xplenty_format_api_time
 *		A timestamp as the API writes times: 2012-12-30T14:21:29Z.
 */
char *
xplenty_format_api_time(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * xplenty_parse_api_time
 *		Read a time the API wrote (UTC, "Z" or "+00:00", with or without a
 *		fraction of a second); false if it is in no such form.
 */
bool
xplenty_parse_api_time(const char *text, TimestampTz *result)
{
	struct pg_tm tm;

	if (!xplenty_scan_api_time(text, &tm))
		return false;
	return tm2timestamp(&tm, 0, NULL, result) == 0;
}
