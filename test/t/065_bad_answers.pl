# Answers that PostgreSQL's jsonb cannot hold (found by fuzz/) must not end
# the worker: a poll that gets one records the problem and tries again.
use strict;
use warnings;
use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use XplentyTest;

start_mock();
my $node = make_node('badanswers', create_extension => 1);
$node->append_conf('postgresql.conf', "xplenty.poll_min_interval = '50ms'");
$node->reload;
my $pid = wait_for_worker($node);

mock_faults([
	{ method => 'GET', path => '^/jobs/[0-9]+$', status => 200, times => 3,
	  headers => { 'Content-Type' => 'application/json' },
	  body => '{"id": 1000, "status": "running", "x": 1e131072}' },
	{ method => 'GET', path => '^/jobs/[0-9]+$', status => 200, times => 3,
	  headers => { 'Content-Type' => 'application/json' },
	  body => '{"id": 1000, "status": "running", "errors": "\\u0000"}' },
]);
my $id = $node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 434)');

ok(wait_for(sub {
	$node->safe_psql('postgres',
		"SELECT job_status FROM xplenty_queue WHERE id = $id") eq 'completed'
}, 30), 'the job is followed to its end past six unreadable answers');
is(worker_pid($node), $pid, 'the worker survived them');
is($node->safe_psql('postgres',
	"SELECT polls >= 7 FROM xplenty_queue WHERE id = $id"), 't',
	'each unreadable answer was a poll tried again');
unlike(slurp_file($node->logfile), qr/xplenty worker.*exited/,
	'no exit of the worker in the log');

$node->stop;
done_testing();
