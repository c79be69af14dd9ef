# Two identical requests (same cluster, package and variables) in flight
# together: a check for one must not adopt the job that the other's POST
# created, or two requests would share one job and one run would be lost.
use strict;
use warnings;
use JSON::PP ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use XplentyTest;

start_mock();
my $node = make_node('twins', create_extension => 1);
wait_for_worker($node);

# The first POST is lost before it creates a job; the second creates one
# but answers 3 s late, so the first request's check runs meanwhile.
mock_faults([
	{ method => 'POST', path => '^/jobs$', package_id => 460,
	  action => 'close', times => 1 },
	{ method => 'POST', path => '^/jobs$', package_id => 460,
	  create => JSON::PP::true, delay_ms => 3000, times => 1 },
]);
$node->safe_psql('postgres',
	q{SELECT xplenty_enqueue_job(52, 460, '{"REQ": "same"}'),
	         xplenty_enqueue_job(52, 460, '{"REQ": "same"}')});

ok(wait_for(sub {
	(queue_status_counts($node, 'package_id = 460')->{submitted} // 0) == 2
}, 40), 'both requests end submitted');

my @jobs = grep { $_->{package_id} == 460 } @{ mock_jobs() };
is(scalar @jobs, 2, 'the API ran the package twice, once per request');
is($node->safe_psql('postgres',
	'SELECT count(DISTINCT job_id) FROM xplenty_queue WHERE package_id = 460'),
	'2', 'each request holds a job of its own');
is($node->safe_psql('postgres',
	'SELECT count(*) FROM xplenty_queue WHERE package_id = 460
	 AND resent_after_check'),
	'1', 'the lost one was resent after its check found nothing of its own');

$node->stop;
done_testing();
