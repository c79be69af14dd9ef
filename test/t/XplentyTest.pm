# XplentyTest.pm - what the TAP tests of the xplenty extension share.
#
# Each test script starts its own mock Xplenty API (test/mock/mock_xplenty.py)
# with start_mock, drives it over its control API (/_mock/...) with the
# mock_* functions, and makes its clusters with make_node, which preloads
# the extension and points it at that mock.  The mock is stopped when the
# script ends; PostgreSQL::Test::Cluster stops the clusters.
#
# The settings every node gets are in %base_settings; the retry delays are
# short so that a test that makes the API fail does not wait long.

package XplentyTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  start_mock mock_port mock_call mock_reset mock_faults mock_clear_faults
  mock_stats mock_requests mock_jobs mock_config
  make_node wait_for worker_pid wait_for_worker queue_rows queue_status_counts
  var_key posts_for post_counts requests_since last_seq
  server_up wait_for_server enqueue_many log_lines_of check_exactly_once
  promote_and_wait make_sync_standby wait_for_status
);

my $json = JSON::PP->new->canonical;
my $http = HTTP::Tiny->new(timeout => 15);
my ($mock_pid, $mock_port);

# PostgreSQL::Test::Cluster->init runs "$PG_REGRESS --config-auth DATADIR"
# (it does nothing on Unix); test/run.sh points PG_REGRESS at the real one.
# Run by hand without it, use the one PGXS ships.
if (!$ENV{PG_REGRESS})
{
	my $pgxs = `pg_config --pgxs`;
	chomp $pgxs;
	$ENV{PG_REGRESS} = dirname($pgxs) . '/../test/regress/pg_regress';
}

# The repository's top directory.
sub top
{
	return $ENV{XPLENTY_TOP} if $ENV{XPLENTY_TOP};
	return dirname(dirname(dirname(__FILE__)));
}

=pod

start_mock(%args) starts the mock API on a free port and returns the port;
extra arguments become command-line options (api_key => 'k' gives
--api-key k).  It is stopped when the script ends.

=cut

sub start_mock
{
	my (%args) = @_;
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	my $port_file = "$dir/mock.port";
	my $log = "$PostgreSQL::Test::Utils::log_path/mock.log";
	my @cmd = ('python3', top() . '/test/mock/mock_xplenty.py',
		'--port', '0', '--port-file', $port_file,
		'--log-file', "$PostgreSQL::Test::Utils::log_path/mock_requests.log");
	while (my ($k, $v) = each %args)
	{
		(my $opt = $k) =~ s/_/-/g;
		push @cmd, "--$opt", $v;
	}
	unlink $port_file;

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	$mock_pid = $pid;

	my $deadline = time() + 15;
	while (time() < $deadline)
	{
		if (-s $port_file)
		{
			open(my $fh, '<', $port_file) or die;
			my $p = <$fh>;
			close $fh;
			chomp $p if defined $p;
			if (defined $p && $p =~ /^\d+$/)
			{
				my $r = $http->get("http://127.0.0.1:$p/_mock/ping");
				if ($r->{success})
				{
					$mock_port = $p;
					note "mock API listening on port $p (pid $pid)";
					return $p;
				}
			}
		}
		die "the mock API exited: see $log"
		  if waitpid($pid, POSIX::WNOHANG()) == $pid;
		sleep 0.05;
	}
	die "the mock API did not start within 15 s: see $log";
}

sub mock_port { return $mock_port; }

END
{
	my $rc = $?;
	if ($mock_pid)
	{
		kill 'TERM', $mock_pid;
		my $deadline = time() + 5;
		while (waitpid($mock_pid, POSIX::WNOHANG()) == 0 && time() < $deadline)
		{
			sleep 0.05;
		}
		kill 'KILL', $mock_pid if waitpid($mock_pid, POSIX::WNOHANG()) == 0;
		$mock_pid = undef;
	}
	$? = $rc;
}

=pod

mock_call(METHOD, PATH, BODY) calls the mock's control API and returns the
decoded answer; it dies on an error status.

=cut

sub mock_call
{
	my ($method, $path, $body) = @_;
	die "no mock started" unless $mock_port;
	my %opts;
	if (defined $body)
	{
		$opts{content} = ref $body ? $json->encode($body) : $body;
		$opts{headers} = { 'Content-Type' => 'application/json' };
	}
	my $r = $http->request($method, "http://127.0.0.1:$mock_port$path",
		\%opts);
	die "mock $method $path: $r->{status} $r->{reason}: $r->{content}"
	  unless $r->{success};
	return length($r->{content} // '') ? $json->decode($r->{content}) : undef;
}

# Forget faults, log, stats and jobs; the optional hash is the body, e.g.
# { first_job_id => 5000 }.
sub mock_reset { return mock_call('POST', '/_mock/reset', $_[0] // {}); }

# Add a fault rule (a hash) or several (an array of hashes).
sub mock_faults { return mock_call('POST', '/_mock/faults', $_[0]); }
sub mock_clear_faults { return mock_call('DELETE', '/_mock/faults'); }
sub mock_stats { return mock_call('GET', '/_mock/stats'); }
sub mock_jobs { return mock_call('GET', '/_mock/jobs'); }
sub mock_config { return mock_call('POST', '/_mock/config', $_[0]); }

# The API request log, entries after sequence number $since (default 0).
sub mock_requests
{
	my ($since) = @_;
	return mock_call('GET', '/_mock/requests?since=' . ($since // 0));
}

# The sequence number of the last request the mock logged.
sub last_seq
{
	my $log = mock_requests(0);
	return @$log ? $log->[-1]{seq} : 0;
}

# Requests after $since, filtered: method => 'POST', path => qr/.../.
sub requests_since
{
	my ($since, %f) = @_;
	return [
		grep {
			(!$f{method} || $_->{method} eq $f{method})
			  && (!$f{path} || $_->{path} =~ $f{path})
		} @{ mock_requests($since) }
	];
}

=pod

var_key(\%vars) is the key of /_mock/stats posts_by_variables for a POST
whose merged variables are %vars: canonical JSON, keys sorted, no spaces.

posts_for(\%vars) is how many POST /jobs carried exactly those variables.

post_counts() is the whole posts_by_variables hash.

=cut

sub var_key { return $json->encode($_[0]); }

sub post_counts { return mock_stats()->{posts_by_variables}; }

sub posts_for
{
	my ($vars) = @_;
	return post_counts()->{ var_key($vars) } // 0;
}

=pod

make_node(NAME, %opts) makes (and unless start => 0, starts) a cluster
with the extension preloaded and pointed at the mock.  Options:
  allows_streaming => 1    as for init
  preload => 'xplenty, pg_cron'
  conf => "more postgresql.conf lines"
  create_extension => 1    CREATE EXTENSION xplenty once started

=cut

sub make_node
{
	my ($name, %opts) = @_;
	die "start the mock first" unless $mock_port;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(
		$opts{allows_streaming}
		? (allows_streaming => $opts{allows_streaming})
		: ());
	my $preload = $opts{preload} // 'xplenty';
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = '$preload'
xplenty.database = 'postgres'
xplenty.api_url = 'http://127.0.0.1:$mock_port'
xplenty.account_id = 'acme'
xplenty.api_key = 'test-api-key'
xplenty.retry_base_delay = '200ms'
xplenty.retry_max_delay = '2s'
});
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	return $node if defined $opts{start} && !$opts{start};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION xplenty')
	  if $opts{create_extension};
	return $node;
}

=pod

wait_for(CODE, TIMEOUT_S [, INTERVAL_S]) calls CODE until it returns true
or TIMEOUT_S passes; returns CODE's last value (false on a timeout).

=cut

sub wait_for
{
	my ($code, $timeout, $interval) = @_;
	$timeout //= 30;
	$interval //= 0.1;
	my $deadline = time() + $timeout;
	while (1)
	{
		my $v = eval { $code->() };
		return $v if $v;
		return $v if time() >= $deadline;
		sleep $interval;
	}
}

=pod

wait_for_status(NODE, ID, STATUS [, TIMEOUT_S]) waits until the queue row
ID has STATUS, for up to TIMEOUT_S (default 30); returns whether it did.

=cut

sub wait_for_status
{
	my ($node, $id, $status, $timeout) = @_;
	return wait_for(
		sub {
			$node->safe_psql('postgres',
				"SELECT status FROM xplenty_queue WHERE id = $id") eq $status;
		},
		$timeout // 30);
}

=pod

promote_and_wait(NODE [, TIMEOUT_S]) promotes a standby and waits until it
has left recovery; true if it has within TIMEOUT_S (default 30).

=cut

sub promote_and_wait
{
	my ($node, $timeout) = @_;
	$node->promote;
	return wait_for(
		sub {
			$node->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 'f';
		},
		$timeout // 30);
}

=pod

make_sync_standby(PRIMARY, NAME, BACKUP) takes a backup of PRIMARY named
BACKUP, starts a streaming standby NAME from it, and makes it PRIMARY's
synchronous standby.  synchronous_standby_names is set on the primary only,
after the backup, so that the standby, once promoted, does not wait for a
standby of its own.  Returns the standby and whether it was synchronous
within 30 s.

=cut

sub make_sync_standby
{
	my ($primary, $name, $backup) = @_;
	$primary->backup($backup);
	my $standby = PostgreSQL::Test::Cluster->new($name);
	$standby->init_from_backup($primary, $backup, has_streaming => 1);
	$standby->start;
	$primary->append_conf('postgresql.conf',
		"synchronous_standby_names = '*'\n");
	$primary->reload;
	my $sync = wait_for(
		sub {
			$primary->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_replication "
				  . "WHERE sync_state = 'sync'") eq '1';
		},
		30);
	return ($standby, $sync);
}

# Does the server accept connections and answer?
sub server_up
{
	my ($node) = @_;
	my ($rc, $out) = $node->psql('postgres', 'SELECT 1', timeout => 5);
	return $rc == 0 && defined $out && $out eq '1';
}

sub wait_for_server
{
	my ($node, $timeout) = @_;
	return wait_for(sub { server_up($node) }, $timeout // 60, 0.2);
}

# The pid of the xplenty worker, or '' if none runs.
sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
		  . "WHERE backend_type = 'xplenty worker'");
}

# Wait for a worker (other than $not_pid, if given); return its pid.
sub wait_for_worker
{
	my ($node, $timeout, $not_pid) = @_;
	my $pid;
	wait_for(
		sub {
			$pid = eval { worker_pid($node) } // '';
			return $pid =~ /^\d+$/ && (!defined $not_pid || $pid ne $not_pid);
		},
		$timeout // 30,
		0.1);
	return ($pid // '') =~ /^\d+$/ ? $pid : undef;
}

=pod

queue_rows($node [, $where]) returns the queue rows as hashes: id, status,
package_id, req (variables->>'REQ'), variables (text), job_id,
resent_after_check ('t'/'f'), attempts, checks, last_error, enqueued_by.

=cut

sub queue_rows
{
	my ($node, $where) = @_;
	$where = $where ? "WHERE $where" : '';
	my @cols = qw(id status package_id req variables job_id
	  resent_after_check attempts checks last_error enqueued_by);
	my $out = $node->safe_psql(
		'postgres', qq{
SELECT json_build_object('id', id, 'status', status,
	'package_id', package_id, 'req', variables->>'REQ',
	'variables', variables::text, 'job_id', job_id,
	'resent_after_check', resent_after_check, 'attempts', attempts,
	'checks', checks, 'last_error', last_error,
	'enqueued_by', enqueued_by)
FROM xplenty_queue $where ORDER BY id});
	return [ map { $json->decode($_) } grep { length } split /\n/, $out ];
}

# { status => count } over the rows matching $where.
sub queue_status_counts
{
	my ($node, $where) = @_;
	$where = $where ? "WHERE $where" : '';
	my $out = $node->safe_psql('postgres',
		"SELECT status, count(*) FROM xplenty_queue $where GROUP BY status");
	my %c;
	for (split /\n/, $out)
	{
		my ($s, $n) = split /\|/;
		$c{$s} = $n;
	}
	return \%c;
}

# Queue $n requests for cluster 52 and $package, in one transaction, with
# variables {"REQ": "$prefix$i"}, i = 1..$n.
sub enqueue_many
{
	my ($node, $n, $prefix, $package) = @_;
	$package //= 434;
	$node->safe_psql('postgres',
		"SELECT count(xplenty_enqueue_job(52, $package, "
		  . "jsonb_build_object('REQ', '$prefix' || i))) "
		  . "FROM generate_series(1, $n) i");
	return;
}

# The lines of the server log written by process $pid.
sub log_lines_of
{
	my ($node, $pid, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset // 0);
	return grep { /\[$pid\]/ } split /\n/, $log;
}

=pod

check_exactly_once($node, $prefix, $n, $name) asserts, for the queued
requests whose variables are {"REQ": "$prefix..."}: there are $n of them,
every one is submitted, each was POSTed once (twice if it was resent after
a check found its first send created nothing), the API created exactly one
job per request, and each row's job_id is that job.  Returns the rows.

=cut

sub check_exactly_once
{
	my ($node, $prefix, $n, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @rows =
	  grep { defined $_->{req} && index($_->{req}, $prefix) == 0 }
	  @{ queue_rows($node) };

	is(scalar @rows, $n, "$name: none of the $n requests is lost");
	my @unsent = grep { $_->{status} ne 'submitted' } @rows;
	is(scalar @unsent, 0, "$name: every request is submitted")
	  or diag explain \@unsent;

	my $posts = post_counts();
	my @wrong_posts = grep {
		my $c = $posts->{ var_key({ REQ => $_->{req} }) } // 0;
		$_->{resent_after_check} ? ($c < 1 || $c > 2) : $c != 1
	} @rows;
	is(scalar @wrong_posts, 0,
		"$name: each request was POSTed once (at most twice if resent after a check)"
	) or diag explain [ map { [ $_, $posts->{ var_key({ REQ => $_->{req} }) } ] }
		  @wrong_posts ];

	my %jobs = map { $_->{id} => $_ } @{ mock_jobs() };
	my %jobs_per_req;
	for my $j (values %jobs)
	{
		my $r = $j->{variables}{REQ};
		$jobs_per_req{$r}++ if defined $r && index($r, $prefix) == 0;
	}
	my @not_once = grep { ($jobs_per_req{ $_->{req} } // 0) != 1 } @rows;
	is(scalar @not_once, 0,
		"$name: the API created exactly one job per request")
	  or diag explain { map { $_->{req} => $jobs_per_req{ $_->{req} } } @not_once };
	is(scalar keys %jobs_per_req, $n, "$name: and no job for anything else");

	my %seen;
	my @dup_ids = grep { defined $_->{job_id} && $seen{ $_->{job_id} }++ } @rows;
	is(scalar @dup_ids, 0, "$name: the job_ids are distinct");
	my @misadopted = grep {
		!defined $_->{job_id}
		  || !$jobs{ $_->{job_id} }
		  || ($jobs{ $_->{job_id} }{variables}{REQ} // '') ne $_->{req}
	} @rows;
	is(scalar @misadopted, 0,
		"$name: each row's job_id is the job created for its variables")
	  or diag explain \@misadopted;
	return \@rows;
}

1;
