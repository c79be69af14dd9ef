/*-------------------------------------------------------------------------
 *
 * job_request.h
 *	  Checking the arguments of a Run Job call and building its body.
 *
 * src/job_request.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_JOB_REQUEST_H
#define XPLENTY_JOB_REQUEST_H

#include "utils/jsonb.h"

typedef struct XplentyJobRequest
{
	int32		cluster_id;
	int32		package_id;
	Jsonb	   *variables;		/* NULL if not given */
	Jsonb	   *dynamic_variables;	/* NULL if not given */
} XplentyJobRequest;

extern void xplenty_job_request_from_args(FunctionCallInfo fcinfo,
										  XplentyJobRequest *request);
extern void xplenty_check_job_request(const XplentyJobRequest *request);
extern char *xplenty_job_request_body(const XplentyJobRequest *request);

#endif							/* XPLENTY_JOB_REQUEST_H */
