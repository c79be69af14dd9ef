# 080_failover.pl - a primary with a synchronous streaming standby dies
# (-m immediate) with requests queued, in flight and submitted; the
# standby is promoted and its worker finishes the queue: none lost, none
# sent twice.
#
# The worker forces synchronous_commit = on for its own commits, so with
# synchronous_standby_names set a claim ('submitting') is on the standby
# before its POST leaves.  After the promotion every request the old
# primary may have sent is 'submitting' (or 'submitted') on the new one,
# and is checked with the API before anything is sent again.

use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

my $true = JSON::PP::true;
my $n = 200;

start_mock();

my $primary = make_node(
	'primary',
	allows_streaming => 1,
	conf => "xplenty.max_in_flight = 16\nxplenty.max_attempts = 100\n",
	create_extension => 1);
my ($standby, $sync) = make_sync_standby($primary, 'standby', 'b1');
ok($sync, 'the standby is a synchronous standby of the primary');
ok(wait_for_worker($primary), 'the primary runs a worker');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'xplenty worker'"
	),
	'0',
	'the standby runs none');

# --- 1. a claim the standby has not confirmed is never sent -----------------
# The 20 requests reach the standby while the worker cannot send (its key
# file is missing); then the primary's walsender is stopped (SIGSTOP), so
# nothing more reaches the standby, and the key is given back.  The worker
# claims the requests, but its commit waits for the standby (SyncRep) and
# it sends nothing.  The primary dies so; after the promotion the requests
# are still 'queued' on the new primary, which sends each exactly once.
# (Without a synchronous standby the same sequence sends every one of them
# twice: test/soak/async_failover.pl.)
$primary->safe_psql('postgres',
	"ALTER SYSTEM SET xplenty.api_key_file = '/nonexistent'; SELECT pg_reload_conf()");
ok( wait_for(
		sub {
			$primary->log_contains(qr/xplenty worker cannot send requests/);
		},
		10),
	'stall: the worker cannot send (no key)');
$primary->safe_psql('postgres',
	"SELECT count(xplenty_enqueue_job(52, 434, jsonb_build_object('REQ', 'stall-' || i))) "
	  . "FROM generate_series(1, 20) i");
$primary->wait_for_catchup($standby);
my $walsender = $primary->safe_psql('postgres',
	'SELECT pid FROM pg_stat_replication');
like($walsender, qr/^\d+$/, "the primary's walsender runs (pid $walsender)");
END { kill 'CONT', $walsender if $walsender && $walsender =~ /^\d+$/; }
kill 'STOP', $walsender;
$primary->safe_psql('postgres',
	"SET synchronous_commit = local; ALTER SYSTEM RESET xplenty.api_key_file; "
	  . "SELECT pg_reload_conf()");
ok( wait_for(
		sub {
			$primary->safe_psql('postgres',
				"SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'xplenty worker'"
			) eq 'SyncRep';
		},
		10),
	'stall: the worker claimed them and waits for the standby to confirm');
sleep 2;
is(mock_stats()->{run_job_posts}, 0,
	'stall: and nothing is sent while the standby cannot confirm the claim');
$primary->stop('immediate');
kill 'CONT', $walsender;
is( $standby->safe_psql('postgres',
		"SELECT string_agg(DISTINCT status, ',') FROM xplenty_queue WHERE variables->>'REQ' LIKE 'stall-%'"
	),
	'queued',
	'stall: on the standby the 20 requests are still queued');
ok(promote_and_wait($standby), 'stall: the standby is promoted');
ok( wait_for(
		sub {
			(queue_status_counts($standby, "variables->>'REQ' LIKE 'stall-%'")
				  ->{submitted} // 0) == 20;
		},
		30),
	'stall: the new primary sends the 20 requests');
check_exactly_once($standby, 'stall-', 20, 'stall');

# The new primary becomes the primary of part 2, with a new standby.
$primary = $standby;
($standby, $sync) = make_sync_standby($primary, 'standby2', 'b2');
ok($sync, 'part 2: a new synchronous standby follows the new primary');

# --- 2. failover with requests in flight -----------------------------------
# Slow answers: each POST creates its job at once and is answered 1 s
# later, so at any moment up to 16 requests are in flight with their job
# created.
mock_faults(
	{
		method => 'POST',
		path => '^/jobs$',
		create => $true,
		delay_ms => 1000,
		times => -1,
		comment => 'slow answers'
	});

enqueue_many($primary, $n, 'fo-');
my $states;
ok( wait_for(
		sub {
			$states = queue_status_counts($primary, "variables->>'REQ' LIKE 'fo-%'");
			($states->{submitted} // 0) >= 16
			  && ($states->{submitting} // 0) > 0
			  && ($states->{queued} // 0) > 0;
		},
		30,
		0.05),
	'requests are submitted, in flight and queued at once');
note 'primary at the stop: ', explain($states);

$primary->stop('immediate');
my $posted = post_counts();
delete $posted->{$_} for grep { /stall-/ } keys %$posted;
note "the old primary POSTed " . scalar(keys %$posted) . " requests";
cmp_ok(scalar(keys %$posted), '<', $n,
	'the primary died before it had sent them all');

# Before the promotion: every request the old primary sent is claimed on
# the standby (hot standby: it can be read).
my %standby_status = map { $_->{req} => $_->{status} }
  @{ queue_rows($standby, "variables->>'REQ' LIKE 'fo-%'") };
is(scalar(keys %standby_status), $n, "the standby has all $n requests");
my @unclaimed = grep {
	my $s = $standby_status{ JSON::PP->new->decode($_)->{REQ} } // 'missing';
	$s ne 'submitting' && $s ne 'submitted';
} keys %$posted;
is(scalar @unclaimed, 0,
	'every request the primary sent is submitting or submitted on the standby')
  or diag explain [ map { [ $_, $standby_status{ JSON::PP->new->decode($_)->{REQ} } ] }
	  @unclaimed ];

# The new primary answers at once.
mock_clear_faults();
my $log_offset = -s $standby->logfile;
ok(promote_and_wait($standby), 'the standby is promoted');
ok(wait_for_worker($standby, 30), 'the new primary starts a worker');
ok( wait_for(
		sub {
			$standby->log_contains(
				qr/xplenty worker found \d+ requests that may have been sent before it stopped/,
				$log_offset);
		},
		30),
	'its worker found the requests left submitting');
ok( wait_for(
		sub {
			my $c = queue_status_counts($standby, "variables->>'REQ' LIKE 'fo-%'");
			($c->{submitted} // 0) == $n;
		},
		60),
	"the new primary's worker submits all $n requests");

my $rows = check_exactly_once($standby, 'fo-', $n, 'failover');
my @adopted = grep { ($_->{last_error} // '') =~ /found by a check/ } @$rows;
cmp_ok(scalar @adopted, '>=', 1,
	'requests in flight at the stop had their jobs adopted, not sent again');
note scalar(@adopted) . ' adopted, '
  . scalar(grep { $_->{resent_after_check} } @$rows)
  . ' resent after a check';

$standby->stop;
done_testing();
