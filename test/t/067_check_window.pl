# 067_check_window.pl - a check reads only the jobs created while its
# request was being sent: however many jobs the package got after the
# last send, the check reads one page past it and stops.  (Before, it read
# on to now, and past ten pages of 100 gave up as 'unknown'.)
#
# The request is put in the queue as the worker leaves a request whose
# answer was lost ('checking'), with its sends an hour and half an hour
# ago; the mock then holds 150 jobs of the package created just now by
# someone else, two pages, and none that matches.
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use XplentyTest;

my $others = 150;

start_mock();
my $node = make_node('window', create_extension => 1);
wait_for_worker($node);

# Jobs of package 450 that another client starts, as the API is asked.
my $http = HTTP::Tiny->new(timeout => 10);
my $port = mock_port();
my %headers = (
	'Accept' => 'application/vnd.xplenty+json; version=2',
	'Content-Type' => 'application/json',
	'Authorization' => 'Basic ' . encode_base64('test-api-key:', ''));
my $created = 0;
for my $i (1 .. $others)
{
	my $r = $http->post(
		"http://127.0.0.1:$port/acme/api/jobs",
		{
			headers => \%headers,
			content => JSON::PP::encode_json(
				{
					cluster_id => 52,
					package_id => 450,
					variables => { OTHER => "other-$i" }
				})
		});
	$created++ if $r->{status} == 201;
}
is($created, $others, "someone else started $others jobs of the package");

my $seq = last_seq();
my $id = $node->safe_psql(
	'postgres', q{
INSERT INTO xplenty_queue (cluster_id, package_id, variables, status,
	attempts, first_sent_at, last_sent_at, next_attempt_at, enqueued_by)
VALUES (52, 450, '{"REQ": "lost-answer"}', 'checking', 2,
	now() - interval '1 hour', now() - interval '30 minutes', now(),
	current_user)
RETURNING id});
# Nothing wakes the worker at an INSERT into the table: a request of
# another package does.
$node->safe_psql('postgres', 'SELECT xplenty_enqueue_job(52, 451)');

ok(wait_for_status($node, $id, 'submitted'),
	'the request is checked, found not sent, sent again and submitted');
is( $node->safe_psql(
		'postgres',
		"SELECT resent_after_check FROM xplenty_queue WHERE id = $id"),
	't',
	'as a resend after a check');
my @pages = @{ requests_since($seq, method => 'GET', path => qr{/jobs$}) };
is(scalar @pages, 1, 'the check read one page of the package\'s jobs')
  or diag explain [ map { $_->{query} } @pages ];
is(posts_for({ REQ => 'lost-answer' }),
	1, 'and the request was POSTed once');

$node->stop;
done_testing();
