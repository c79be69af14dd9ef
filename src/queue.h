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
#include "poll.h"

/* A row of the queue as the worker works on it. */
typedef struct XplentyQueuedRequest
{
	int64		id;
	XplentyJobRequest request;
	int			attempts;		/* sends so far, this one included */
	int			checks;			/* checks so far, this one included */
	TimestampTz first_sent_at;	/* 0 if never sent */
	TimestampTz last_sent_at;	/* 0 if never sent */
	int64		job_id;			/* for a poll: the job to ask about */
	char	   *job_status;		/* for a poll: its status, as last seen */
	double		job_age_s;		/* for a poll: seconds since submitted */
	MemoryContext context;		/* holds this, until the caller deletes it */
} XplentyQueuedRequest;

extern bool xplenty_queue_exists(void);
extern bool xplenty_queue_look(int64 id, MemoryContext context,
							   char **status, char **job_status,
							   bool *ended);
extern int64 xplenty_queue_insert(const XplentyJobRequest *request,
								  const char *dedup_key, int64 depends_on);

/*
 * For the worker, inside a transaction, between SPI_connect and finish.
 * The xplenty_queue_set_* functions only keep the change: it is written,
 * with the others of the round, by xplenty_queue_write_answers, which the
 * other statements here call first.
 */
extern int	xplenty_queue_recover(void);
extern List *xplenty_queue_claim(const char *status, int limit,
								 long hold_ms, MemoryContext parent);
extern void xplenty_queue_set_submitted(int64 id, int64 job_id,
										Jsonb *job,
										const XplentyJobState *state,
										long poll_delay_ms,
										const char *note);
extern List *xplenty_queue_claim_polls(int limit, long hold_ms,
									   MemoryContext parent);
extern void xplenty_queue_set_job(int64 id, Jsonb *job,
								  const XplentyJobState *state,
								  long poll_delay_ms);
extern void xplenty_queue_set_poll_failed(int64 id, const char *error,
										  long delay_ms);
extern void xplenty_queue_notify(int64 id, int64 job_id, const char *status);
extern int	xplenty_queue_resolve_waiting(void);
extern bool xplenty_queue_twin_submitting(const XplentyQueuedRequest *q);
extern void xplenty_queue_set_pending(int64 id, const char *status,
									  long delay_ms, const char *error,
									  bool resent_after_check);
extern void xplenty_queue_set_final(int64 id, const char *status,
									const char *error);
extern bool xplenty_queue_job_adopted(int64 job_id);
extern void xplenty_queue_ms_until_due(long *send_ms, long *poll_ms);
extern int64 xplenty_queue_delete_finished(int retention_s, int limit);
extern void xplenty_queue_write_answers(void);

#endif							/* XPLENTY_QUEUE_H */
