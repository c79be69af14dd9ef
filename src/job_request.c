/*-------------------------------------------------------------------------
 *
 * job_request.c
 *	  Checking the arguments of a Run Job call and building its body.
 *
 * Everything the API would refuse is refused here first, in the caller's
 * transaction and with no request sent: a queued request that could never
 * succeed should fail at enqueue time, not hours later in the worker.
 *
 * The body is assembled as a jsonb value and printed by PostgreSQL's own
 * JSON code, so that no variable name or value can break out of its string.
 *
 * src/job_request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/jsonb.h"

#include "arg_checks.h"
#include "job_request.h"

static void check_variables(Jsonb *variables, const char *argname);
static void check_no_overlap(Jsonb *variables, Jsonb *dynamic_variables);

/*
 * xplenty_job_request_from_args
 *		Read (cluster, package, variables, dynamic_variables) arguments.
 *
 * The SQL functions are not STRICT, so that a NULL cluster or package gets
 * a clear error instead of a silent NULL result.
 */
void
xplenty_job_request_from_args(FunctionCallInfo fcinfo,
							  XplentyJobRequest *request)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cluster ID must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("package ID must not be null")));

	request->cluster_id = PG_GETARG_INT32(0);
	request->package_id = PG_GETARG_INT32(1);
	request->variables = (PG_NARGS() > 2 && !PG_ARGISNULL(2)) ?
		PG_GETARG_JSONB_P(2) : NULL;
	request->dynamic_variables = (PG_NARGS() > 3 && !PG_ARGISNULL(3)) ?
		PG_GETARG_JSONB_P(3) : NULL;
}

/*
 * json_type_name
 *		The JSON type of a jsonb value, for messages.
 */
static const char *
json_type_name(const JsonbValue *value)
{
	switch (value->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(value->val.binary.data) ?
				"an array" : "an object";
		default:
			return "not a string";
	}
}

/*
 * jsonb_type_name
 *		The JSON type of a whole jsonb datum, for messages.
 */
static const char *
jsonb_type_name(Jsonb *value)
{
	JsonbValue	v;

	if (JsonbExtractScalar(&value->root, &v))
		return json_type_name(&v);
	return JB_ROOT_IS_ARRAY(value) ? "an array" : "an object";
}

/*
 * check_variables
 *		An object of variable names to string values, or an error.
 */
static void
check_variables(Jsonb *variables, const char *argname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;

	if (variables == NULL)
		return;

	if (!JB_ROOT_IS_OBJECT(variables) || JB_ROOT_IS_SCALAR(variables))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", argname),
				 errdetail("The value given is %s.",
						   jsonb_type_name(variables)),
				 errhint("Give the variables as an object of names and "
						 "values, for example '{\"DAY\": \"2026-12-03\"}'.")));

	it = JsonbIteratorInit(&variables->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = pnstrdup(v.val.string.val, v.val.string.len);
			if (!xplenty_valid_variable_name(v.val.string.val,
											 v.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"%s\" is not a valid variable name", name),
						 errdetail("In %s: a variable name is a letter or "
								   "underscore followed by letters, digits "
								   "and underscores, at most %d in all.",
								   argname, MAX_VARIABLE_NAME_LENGTH)));
		}
		else if (tok == WJB_VALUE && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of variable \"%s\" must be a JSON string",
							name),
					 errdetail("In %s, the value given is %s.", argname,
							   json_type_name(&v)),
					 errhint("Xplenty variables are expressions written as "
							 "text: for example {\"LIMIT\": \"10\"} or "
							 "{\"NAME\": \"'text'\"}.")));
	}
}

/*
 * check_no_overlap
 *		No variable may be both static and dynamic: which would win is not
 *		documented, so we refuse to guess.
 */
static void
check_no_overlap(Jsonb *variables, Jsonb *dynamic_variables)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (variables == NULL || dynamic_variables == NULL)
		return;

	it = JsonbIteratorInit(&variables->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY &&
			findJsonbValueFromContainer(&dynamic_variables->root,
										JB_FOBJECT, &v) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("variable \"%s\" is given both in variables "
							"and in dynamic_variables",
							pnstrdup(v.val.string.val, v.val.string.len)),
					 errhint("Give each variable once.")));
	}
}

/*
 * xplenty_check_job_request
 *		Refuse a request the API would refuse.
 */
void
xplenty_check_job_request(const XplentyJobRequest *request)
{
	if (request->cluster_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cluster ID must be a positive integer"),
				 errdetail("The value given is %d.", request->cluster_id)));
	if (request->package_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("package ID must be a positive integer"),
				 errdetail("The value given is %d.", request->package_id)));

	check_variables(request->variables, "variables");
	check_variables(request->dynamic_variables, "dynamic_variables");
	check_no_overlap(request->variables, request->dynamic_variables);
}

/*
 * append_variables
 *		Append a variables member to a body being built, if it was given.
 */
static void
append_variables(StringInfo body, const char *name, Jsonb *variables)
{
	if (variables == NULL)
		return;
	appendStringInfo(body, ", \"%s\": ", name);
	(void) JsonbToCString(body, &variables->root, VARSIZE(variables));
}

/*
 * xplenty_job_request_body
 *		The JSON body of POST /jobs for a checked request.
 *
 * A variables argument that was not given is left out of the body, not
 * sent as null.  The member names are our own constants and the IDs are
 * integers, so those are written as they are; the variables, which hold
 * whatever the caller gave, are written by PostgreSQL's jsonb output code,
 * which quotes and escapes every key and string in them.  (Building the
 * whole body as a jsonb first would cost as much again as the rest of
 * preparing the request, for the same text in another member order.)
 */
char *
xplenty_job_request_body(const XplentyJobRequest *request)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"cluster_id\": %d, \"package_id\": %d",
					 request->cluster_id, request->package_id);
	append_variables(&body, "variables", request->variables);
	append_variables(&body, "dynamic_variables", request->dynamic_variables);
	appendStringInfoChar(&body, '}');
	return body.data;
}
