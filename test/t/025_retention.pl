# Finished requests are deleted once they are older than
# xplenty.queue_retention; requests still pending, or whose job still
# runs, and requests others wait for, are kept.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use XplentyTest;

start_mock();
my $node = make_node('retention', create_extension => 1);
$node->append_conf('postgresql.conf', "xplenty.poll_min_interval = '50ms'");
$node->reload;
wait_for_worker($node);

mock_config({ package_timelines => {
	'970' => [ [ 'idle', 0 ], [ 'running', 0.1 ], [ 'completed', 60 ] ] } });
mock_faults({ method => 'POST', path => '^/jobs$', package_id => 971,
			  status => 422, body => { message => 'Validation failed' },
			  times => -1 });

my ($done, $failed, $running) = split /\|/, $node->safe_psql('postgres',
	'SELECT xplenty_enqueue_job(52, 434), xplenty_enqueue_job(52, 971),
	        xplenty_enqueue_job(52, 970)');
ok(wait_for(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM xplenty_queue
		 WHERE (id = $done AND job_status = 'completed')
		    OR (id = $failed AND status = 'failed')
		    OR (id = $running AND job_status = 'running')") eq '3'
}, 20), 'one request completed, one failed, one still running');

# The worker deletes at its first round and then every minute: restart it
# with a retention of one second.
$node->append_conf('postgresql.conf', "xplenty.queue_retention = '1s'");
$node->reload;
sleep 1.5;
my $pid = worker_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM xplenty_queue WHERE id IN ($done, $failed)") eq '0'
}, 20), 'the completed and the failed request are deleted');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM xplenty_queue WHERE id = $running"), '1',
	'the request whose job still runs is kept');

$node->stop;
done_testing();
