/*-------------------------------------------------------------------------
 *
 * api.h
 *	  The Xplenty API calls, made synchronously from SQL.
 *
 * src/api.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_API_H
#define XPLENTY_API_H

#include "http_client.h"
#include "job_request.h"

extern char *xplenty_api_endpoint(const char *path);
extern void xplenty_prepare_run_job(XplentyHttpRequest *req,
									const XplentyJobRequest *request);
extern char *xplenty_run_job_message(const XplentyJobRequest *request);
extern Jsonb *xplenty_run_job_answer(const XplentyHttpRequest *req,
									 const XplentyJobRequest *request,
									 int64 *job_id);
extern Jsonb *xplenty_run_job_now(const XplentyJobRequest *request);
extern Jsonb *xplenty_api_call(XplentyHttpMethod method, const char *path,
							   long expected_status, const char *message);

#endif							/* XPLENTY_API_H */
