/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background worker that sends queued requests to the API.
 *
 * src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef XPLENTY_WORKER_H
#define XPLENTY_WORKER_H

extern void xplenty_register_worker(void);

#endif							/* XPLENTY_WORKER_H */
