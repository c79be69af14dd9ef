/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Waking the background worker when queued requests are committed.
 *
 * The worker sleeps on its latch.  The worker publishes that latch, and
 * the database it serves, in a small piece of shared memory; a backend
 * that queues a request sets a flag, and a transaction callback sets the
 * latch when, and only when, the transaction commits in that database.
 * So a new request is picked up at once, a rolled back one wakes nobody,
 * and the worker never polls the table for work.
 *
 * The shared memory is requested from shared_preload_libraries, where the
 * worker is registered too.  Without it (the library loaded on demand)
 * there is no worker to wake, and these functions do nothing.
 *
 * src/wakeup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "wakeup.h"

typedef struct XplentySharedState
{
	slock_t		mutex;
	Latch	   *worker_latch;	/* NULL while no worker runs */
	Oid			worker_database;	/* the database it serves */
} XplentySharedState;

static XplentySharedState *shared_state = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

static void request_shared_memory(void);
static void attach_shared_memory(void);
static void wake_on_commit(XactEvent event, void *arg);
static void forget_latch(int code, Datum arg);

/*
 * xplenty_wakeup_install_hooks
 *		Ask for the shared state; called from _PG_init in the postmaster.
 */
void
xplenty_wakeup_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shared_memory;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = attach_shared_memory;
}

static void
request_shared_memory(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(XplentySharedState)));
}

static void
attach_shared_memory(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared_state = ShmemInitStruct("xplenty",
								   sizeof(XplentySharedState), &found);
	if (!found)
	{
		SpinLockInit(&shared_state->mutex);
		shared_state->worker_latch = NULL;
		shared_state->worker_database = InvalidOid;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * xplenty_worker_publish_latch
 *		Let backends of the worker's database wake this process, the
 *		worker, until it exits.  Called once it is connected.
 */
void
xplenty_worker_publish_latch(void)
{
	if (shared_state == NULL)
		return;
	SpinLockAcquire(&shared_state->mutex);
	shared_state->worker_latch = MyLatch;
	shared_state->worker_database = MyDatabaseId;
	SpinLockRelease(&shared_state->mutex);
	on_shmem_exit(forget_latch, (Datum) 0);
}

static void
forget_latch(int code, Datum arg)
{
	(void) code;
	(void) arg;
	SpinLockAcquire(&shared_state->mutex);
	if (shared_state->worker_latch == MyLatch)
		shared_state->worker_latch = NULL;
	SpinLockRelease(&shared_state->mutex);
}

/*
 * xplenty_wake_worker
 *		Set the worker's latch now, if a worker runs and serves this
 *		backend's database.
 *
 * A request queued in another database is never sent by the worker, so
 * waking it would only cost it an empty round, on a CPU the committing
 * backend may share.  A PGPROC's latch stays valid shared memory after
 * its process exits, so setting a latch that has just been left is
 * harmless.
 */
void
xplenty_wake_worker(void)
{
	Latch	   *latch;

	if (shared_state == NULL)
		return;
	SpinLockAcquire(&shared_state->mutex);
	latch = shared_state->worker_latch;
	if (shared_state->worker_database != MyDatabaseId)
		latch = NULL;
	SpinLockRelease(&shared_state->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * xplenty_wake_worker_at_commit
 *		Wake the worker when the current transaction commits.
 *
 * XXX: a transaction that is prepared (two-phase commit) wakes nobody at
 * COMMIT PREPARED, which runs in another session; its requests wait for
 * the worker's next periodic look at the queue.
 */
void
xplenty_wake_worker_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_on_commit, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

static void
wake_on_commit(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_at_commit)
				xplenty_wake_worker();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}
