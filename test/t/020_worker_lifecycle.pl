# 020_worker_lifecycle.pl - the background worker's life: it starts with
# the server and waits quietly while the extension is not installed; it is
# woken by the commit that queues a request; the postmaster restarts it
# when it is terminated; it takes a changed xplenty.max_in_flight on SIGHUP
# without a restart; and on SIGTERM it leaves promptly, its requests in
# flight checked, not sent again, when it comes back.

use strict;
use warnings;

use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use XplentyTest;

my $true = JSON::PP::true;

start_mock();
my $node = make_node('life');

sub status_of
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT status FROM xplenty_queue WHERE id = $id");
}

# How long from the enqueuing commit until the row is submitted.
sub time_to_submit
{
	my ($req) = @_;
	my $t0 = time();
	my $id = $node->safe_psql('postgres',
		"SELECT xplenty_enqueue_job(52, 434, '{\"REQ\": \"$req\"}')");
	return undef
	  unless wait_for(sub { status_of($id) eq 'submitted' }, 15, 0.02);
	return time() - $t0;
}

# The most rows seen 'submitting' at once until every row whose REQ starts
# with $prefix is submitted (or $timeout passes).
sub peak_submitting
{
	my ($prefix, $n, $timeout) = @_;
	my $peak = 0;
	my $where = "variables->>'REQ' LIKE '$prefix%'";
	wait_for(
		sub {
			my $c = queue_status_counts($node, $where);
			$peak = $c->{submitting} if ($c->{submitting} // 0) > $peak;
			return ($c->{submitted} // 0) == $n;
		},
		$timeout,
		0.05);
	return $peak;
}

# --- the worker runs, and idles without the extension -----------------------
my $pid = wait_for_worker($node);
ok($pid, "a process with backend_type 'xplenty worker' runs");
is( $node->safe_psql('postgres',
		"SELECT application_name FROM pg_stat_activity WHERE pid = $pid"),
	'xplenty worker',
	'its application_name says so too');

# Without the extension each round finds no queue; reloads wake the worker
# for more rounds than its 10 s look would give in the time.
for (1 .. 3)
{
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	sleep 1;
}
is(worker_pid($node), $pid,
	'without the extension installed the worker stays up (same pid)');
my @errors = grep { /\b(ERROR|FATAL|PANIC):/ } log_lines_of($node, $pid);
is(scalar @errors, 0, 'and logs no error') or diag join("\n", @errors);
ok(scalar(grep { /xplenty worker started/ } log_lines_of($node, $pid)),
	'it logged its start');

# --- woken at commit ------------------------------------------------------
$node->safe_psql('postgres', 'CREATE EXTENSION xplenty');
my $t = time_to_submit('wake-1');
ok(defined $t && $t < 3,
	sprintf('after CREATE EXTENSION a request is submitted in %.2f s, '
		  . 'not at the next 10 s look', $t // -1));
sleep 1;    # the worker is asleep with nothing to do
$t = time_to_submit('wake-2');
ok(defined $t && $t < 3,
	sprintf('an idle worker is woken by the commit: submitted in %.2f s',
		$t // -1));
my $seq = last_seq();
$node->safe_psql('postgres',
	q{BEGIN; SELECT xplenty_enqueue_job(52, 434, '{"REQ": "rolled-back"}'); ROLLBACK;}
);
sleep 1;
is(scalar @{ requests_since($seq, method => 'POST') },
	0, 'a rolled back request is never sent');
is(worker_pid($node), $pid, 'the worker is still the same process');

# --- terminated: the postmaster starts another ------------------------------
{
	my $offset = -s $node->logfile;
	is( $node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
		't', 'pg_terminate_backend on the worker');
	my $t0 = time();
	my $new_pid = wait_for_worker($node, 15, $pid);
	ok($new_pid, 'a new worker runs after it was terminated');
	ok(time() - $t0 < 10,
		sprintf('within %.1f s (bgw_restart_time is 5 s)', time() - $t0));
	ok( $node->log_contains(
			qr/\[$pid\] LOG:  xplenty worker shutting down with 0 requests in flight/,
			$offset),
		'the old worker said it was shutting down');
	$t = time_to_submit('after-terminate');
	ok(defined $t, 'the queue goes on with the new worker');
	$pid = $new_pid;
}

# --- SIGHUP: a new xplenty.max_in_flight applies at once --------------------
{
	mock_faults(
		{
			method => 'POST',
			path => '^/jobs$',
			create => $true,
			delay_ms => 1000,
			times => -1,
			comment => 'slow answers'
		});

	enqueue_many($node, 6, 'hup-a-');
	my $peak = peak_submitting('hup-a-', 6, 20);
	is($peak, 6,
		'with max_in_flight 16, all 6 requests are in flight at once');

	$node->safe_psql('postgres',
		'ALTER SYSTEM SET xplenty.max_in_flight = 2');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok( wait_for(
			sub {
				$node->safe_psql('postgres', 'SHOW xplenty.max_in_flight') eq
				  '2';
			},
			10),
		'the reload is done');
	sleep 0.5;    # the worker got its SIGHUP at the same time

	enqueue_many($node, 6, 'hup-b-');
	$peak = peak_submitting('hup-b-', 6, 30);
	is($peak, 2, 'after the reload, at most 2 requests are in flight at once');
	is(queue_status_counts($node, "variables->>'REQ' LIKE 'hup-b-%'")
		  ->{submitted},
		6, 'and all 6 are submitted');
	is(worker_pid($node), $pid, 'the worker was not restarted for it');

	$node->safe_psql('postgres', 'ALTER SYSTEM RESET xplenty.max_in_flight');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	mock_clear_faults();
}

# --- SIGTERM with requests in flight: a prompt stop, nothing sent twice ------
{
	# Answers far slower than the worker's 3 s grace at shutdown.
	mock_faults(
		{
			method => 'POST',
			path => '^/jobs$',
			create => $true,
			delay_ms => 20000,
			times => -1,
			comment => 'very slow answers'
		});
	my $seq = last_seq();
	enqueue_many($node, 8, 'term-');
	ok( wait_for(
			sub {
				(queue_status_counts($node, "variables->>'REQ' LIKE 'term-%'")
					  ->{submitting} // 0) == 8
				  && @{ requests_since($seq, method => 'POST') } == 8;
			},
			10),
		'term: 8 requests are in flight');
	my $offset = -s $node->logfile;
	my $t0 = time();
	$node->stop('fast');
	my $took = time() - $t0;
	ok($took < 8, sprintf('term: a fast shutdown took %.1f s', $took));
	ok( $node->log_contains(
			qr/xplenty worker shutting down with 8 requests in flight/,
			$offset),
		'term: the worker left with its 8 requests in flight');

	mock_clear_faults();
	$node->start;
	ok( wait_for(
			sub {
				(queue_status_counts($node, "variables->>'REQ' LIKE 'term-%'")
					  ->{submitted} // 0) == 8;
			},
			30),
		'term: after the restart all 8 are submitted');
	my $rows = check_exactly_once($node, 'term-', 8, 'term');
	is(scalar(grep { ($_->{last_error} // '') =~ /found by a check/ } @$rows),
		8, 'term: each was found by a check, none sent again');
}

$node->stop;
done_testing();
