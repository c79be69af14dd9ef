/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  The queue table, xplenty_queue: every statement run against it.
 *
 * src/queue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_QUEUE_H
#define XPLENTY_QUEUE_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

#include "job_request.h"

/* A row of the queue as the worker works on it. */
typedef struct XplentyQueuedRequest
{
	int64		id;
	XplentyJobRequest request;
	int			attempts;		/* sends so far, this one included */
	int			checks;			/* checks so far, this one included */
	TimestampTz first_sent_at;	/* 0 if never sent */
	MemoryContext context;		/* holds this, until the caller deletes it */
} XplentyQueuedRequest;

extern bool xplenty_queue_exists(void);
extern int64 xplenty_queue_insert(const XplentyJobRequest *request,
								  const char *dedup_key);

/* For the worker, inside a transaction, between SPI_connect and finish. */
extern int	xplenty_queue_recover(void);
extern List *xplenty_queue_claim(const char *status, int limit,
								 long hold_ms, MemoryContext parent);
extern void xplenty_queue_set_submitted(int64 id, int64 job_id,
										Jsonb *job, const char *note);
extern void xplenty_queue_set_pending(int64 id, const char *status,
									  long delay_ms, const char *error,
									  bool resent_after_check);
extern void xplenty_queue_set_final(int64 id, const char *status,
									const char *error);
extern bool xplenty_queue_job_adopted(int64 job_id);
extern long xplenty_queue_ms_until_due(void);
extern int64 xplenty_queue_delete_finished(int retention_s, int limit);

#endif							/* XPLENTY_QUEUE_H */
