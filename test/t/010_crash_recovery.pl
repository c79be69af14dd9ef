# 010_crash_recovery.pl - nothing queued is lost, and nothing is started
# twice, when the worker or the server dies with requests in flight or an
# answer is lost on the way back.
#
# The worker commits a row as 'submitting' before its POST leaves; a new
# worker turns every 'submitting' row into 'checking' and lists the
# package's jobs (GET /jobs?package_id=...&since=...) to adopt the job the
# lost request created, sending it again only if there is none.

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

# Killing a backend makes the postmaster reinitialize; Cluster.pm turns that
# off by default, and the first part of this test needs it.
my $node = make_node(
	'crash',
	conf => "restart_after_crash = on\n",
	create_extension => 1);

# Slow answers: every POST /jobs creates its job at once, but the answer
# comes 1.5 s later, so requests sit 'submitting' with their job created.
my %slow = (
	method => 'POST',
	path => '^/jobs$',
	create => $true,
	delay_ms => 1500,
	times => -1,
	comment => 'slow answers');

sub req_where { return "variables->>'REQ' LIKE '$_[0]%'"; }

# --- 1. SIGKILL of the worker with requests in flight ----------------------
{
	my $pid = wait_for_worker($node);
	ok($pid, "the worker runs (pid $pid)");
	mock_faults({%slow});

	enqueue_many($node, 40, 'kill-');
	ok( wait_for(
			sub {
				(queue_status_counts($node, req_where('kill-'))->{submitting}
					  // 0) > 0
				  && mock_stats()->{run_job_posts} > 0;
			},
			10),
		'kill: requests are being submitted and POSTs reach the API');
	my $before = queue_status_counts($node, req_where('kill-'));
	note 'kill: states at the kill: ', explain($before);
	my $log_offset = -s $node->logfile;

	ok(kill('KILL', $pid), "kill: SIGKILL sent to the worker $pid");

	ok(wait_for(sub { $node->log_contains(
				qr/all server processes terminated; reinitializing/,
				$log_offset) }, 30),
		'kill: the postmaster reinitialized after the crash');
	ok(wait_for_server($node, 60), 'kill: the server is back');
	my $new_pid = wait_for_worker($node, 30, $pid);
	ok($new_pid, "kill: a new worker runs (pid " . ($new_pid // '?') . ")");

	ok( wait_for(
			sub {
				$node->log_contains(
					qr/xplenty worker found \d+ requests that may have been sent before it stopped/,
					$log_offset);
			},
			30),
		'kill: the new worker found the requests left submitting');

	ok( wait_for(
			sub {
				(queue_status_counts($node, req_where('kill-'))->{submitted}
					  // 0) == 40;
			},
			60),
		'kill: all 40 requests end submitted');

	my $rows = check_exactly_once($node, 'kill-', 40, 'kill');
	my @adopted =
	  grep { ($_->{last_error} // '') =~ /found by a check/ } @$rows;
	cmp_ok(scalar @adopted, '>=', 1,
		'kill: the jobs of requests in flight at the kill were adopted, not sent again'
	);
	is( scalar(grep { $_->{checks} > 0 } @$rows),
		scalar(@adopted) + scalar(grep { $_->{resent_after_check} } @$rows),
		'kill: every request that was checked was either adopted or resent');
}

# --- 2. immediate shutdown with requests in every state -----------------
{
	enqueue_many($node, 40, 'stop-');
	my $states;
	ok( wait_for(
			sub {
				$states = queue_status_counts($node, req_where('stop-'));
				$states->{queued} && $states->{submitting}
				  && $states->{submitted};
			},
			20,
			0.05),
		'stop: requests are queued, submitting and submitted at once');
	note 'stop: states at the stop: ', explain($states);
	my $log_offset = -s $node->logfile;

	$node->stop('immediate');
	$node->start;

	ok( wait_for(
			sub {
				$node->log_contains(
					qr/xplenty worker found \d+ requests that may have been sent before it stopped/,
					$log_offset);
			},
			30),
		'stop: after the restart the worker found the requests left submitting'
	);
	ok( wait_for(
			sub {
				(queue_status_counts($node, req_where('stop-'))->{submitted}
					  // 0) == 40;
			},
			60),
		'stop: all 40 requests end submitted');
	my $rows = check_exactly_once($node, 'stop-', 40, 'stop');
	cmp_ok(scalar(grep { ($_->{last_error} // '') =~ /found by a check/ }
			  @$rows),
		'>=', 1, 'stop: jobs of requests in flight were adopted');
}

mock_clear_faults();

# --- 3. the job is created but the connection drops before the answer ------
{
	my $seq = last_seq();
	mock_faults(
		{
			method => 'POST',
			path => '^/jobs$',
			package_id => 435,
			create => $true,
			action => 'close',
			times => 1,
			comment => 'job created, answer lost'
		});
	my $id = $node->safe_psql('postgres',
		q{SELECT xplenty_enqueue_job(52, 435, '{"REQ": "lost-answer"}')});
	ok(wait_for_status($node, $id, 'submitted'),
		'lost answer: the request ends submitted');
	my ($row) = @{ queue_rows($node, "id = $id") };
	my @posts = @{ requests_since($seq, method => 'POST', path => qr{/jobs$}) };
	is(scalar @posts, 1, 'lost answer: it was POSTed once');
	ok($posts[0] && $posts[0]{job_id},
		'lost answer: the mock created a job before dropping the connection');
	is($row->{job_id}, $posts[0] && $posts[0]{job_id},
		'lost answer: the row adopted the job the mock created');
	like($row->{last_error}, qr/check/,
		'lost answer: last_error says the job was found by a check');
	ok(!$row->{resent_after_check}, 'lost answer: it was not resent');
	ok( scalar(
			grep {
				$_->{method} eq 'GET'
				  && $_->{path} =~ m{/jobs$}
				  && $_->{query} =~ /package_id=435/
			} @{ mock_requests($seq) }),
		'lost answer: the worker listed the package\'s jobs');
	is(posts_for({ REQ => 'lost-answer' }), 1,
		'lost answer: posts_by_variables says one POST');
}

# --- 4. the connection drops and no job is created: sent again once --------
{
	my $seq = last_seq();
	mock_faults(
		{
			method => 'POST',
			path => '^/jobs$',
			package_id => 436,
			action => 'close',
			times => 1,
			comment => 'nothing created, answer lost'
		});
	my $id = $node->safe_psql('postgres',
		q{SELECT xplenty_enqueue_job(52, 436, '{"REQ": "lost-request"}')});
	ok(wait_for_status($node, $id, 'submitted'),
		'lost request: the request ends submitted');
	my ($row) = @{ queue_rows($node, "id = $id") };
	ok($row->{resent_after_check},
		'lost request: resent_after_check is set');
	is(posts_for({ REQ => 'lost-request' }), 2,
		'lost request: it was POSTed twice');
	my @log = @{ mock_requests($seq) };
	my @kinds = map { $_->{method} } grep { $_->{path} =~ m{/jobs$} } @log;
	is_deeply(\@kinds, [qw(POST GET POST)],
		'lost request: POST, then a check, then the one resend');
	my @jobs = grep { ($_->{variables}{REQ} // '') eq 'lost-request' }
	  @{ mock_jobs() };
	is(scalar @jobs, 1, 'lost request: one job exists for it');
	is($row->{job_id}, $jobs[0] && $jobs[0]{id},
		'lost request: and the row has it');
}

$node->stop;
done_testing();
