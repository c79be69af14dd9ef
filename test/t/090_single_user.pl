# 090_single_user.pl - xplenty_run_job works in a single-user backend
# ("postgres --single"), the mode a DBA falls back to for repairs.  Such a
# backend has no postmaster whose death it could watch, so its wait sets
# must leave that event out, and find the socket where it really is.

use strict;
use warnings;

use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use XplentyTest;

start_mock();
my $node = make_node('single', create_extension => 1);
$node->stop;

# Three calls: the first opens the connection, the others wait on it
# through the wait set that holds its socket.
my $sql = <<'EOS';
SELECT count(xplenty_run_job(52, 434) ->> 'id') AS launched FROM generate_series(1, 3)
EOS
my ($out, $err) = ('', '');
IPC::Run::run(
	[ 'postgres', '--single', '-F', '-D', $node->data_dir, 'postgres' ],
	'<' => \$sql,
	'>' => \$out,
	'2>' => \$err);

like($out, qr/launched = "3"/, 'three jobs launched from a single-user backend');
unlike($err, qr/ERROR/, 'no error in the single-user backend');
is(scalar @{ mock_jobs() }, 3, 'the mock created three jobs');

done_testing();
