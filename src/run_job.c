/*-------------------------------------------------------------------------
 *
 * run_job.c
 *	  xplenty_run_job(): launch an Xplenty job from SQL, synchronously.
 *
 * src/run_job.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/jsonb.h"

#include "api.h"
#include "job_request.h"

PG_FUNCTION_INFO_V1(xplenty_run_job);

/*
 * xplenty_run_job
 *		xplenty_run_job(cluster, package, variables, dynamic_variables):
 *		POST /jobs and return the job the API created.
 *
 * The arguments are checked before anything is sent, so that a call that
 * cannot succeed costs no API credit and starts nothing.
 */
Datum
xplenty_run_job(PG_FUNCTION_ARGS)
{
	XplentyJobRequest request;

	xplenty_job_request_from_args(fcinfo, &request);
	xplenty_check_job_request(&request);

	PG_RETURN_JSONB_P(xplenty_run_job_now(&request));
}
