<?php
// What the web panel does with l2tp-routectl, as a php-cli script: the reference the
// tests drive (as www-data, through /etc/sudoers.d/l2tp-routectl) and a template for
// panel code. The contract (../shared/CONTRACT.md, "What the panel reads") is the
// rule; nothing here may need more of the tool than the old panel did:
//   - `sudo /usr/local/sbin/l2tp-routectl ARGS 2>&1`, every argument single-quoted;
//   - exit status 0 is success, anything else failure; the text is shown as it is;
//   - `list --peer`: keep the lines that, trimmed, start with d.d.d.d/d, except lines
//     containing `Routes for peer` or `Peer:`;
//   - after a successful add, `apply --peer`; deleting a user: `del --dst all`.
//
// Usage: php l2tp-routes-panel.php ACTION ARGS...   (prints one JSON object)
//   add PEER DST [GW [DEV]]   routes PEER   list   del PEER DST   delete-user PEER   apply [PEER]

const ROUTECTL = '/usr/local/sbin/l2tp-routectl';

// Single quotes around every value, a quote inside closed and reopened: the shell
// sees each value as one word whatever it contains.
function quote_arg($value)
{
    return "'" . str_replace("'", "'\\''", (string) $value) . "'";
}

function routectl(array $args)
{
    $command = 'sudo ' . ROUTECTL . ' ' . implode(' ', array_map('quote_arg', $args)) . ' 2>&1';
    $lines = array();
    $status = -1;
    exec($command, $lines, $status);
    return array('args' => $args, 'command' => $command, 'status' => $status, 'output' => implode("\n", $lines));
}

function peer_routes($output)
{
    $routes = array();
    foreach (explode("\n", $output) as $line) {
        $line = trim($line);
        if (strpos($line, 'Routes for peer') !== false || strpos($line, 'Peer:') !== false) {
            continue;
        }
        if (preg_match('/^\d+\.\d+\.\d+\.\d+\/\d+/', $line)) {
            $routes[] = $line;
        }
    }
    return $routes;
}

function run_action($action, array $values)
{
    $calls = array();
    $result = array('action' => $action);
    switch ($action) {
        case 'add':
            if (count($values) < 2) {
                return null;
            }
            $args = array('add', '--peer', $values[0], '--dst', $values[1]);
            if (isset($values[2]) && $values[2] !== '') {
                array_push($args, '--gw', $values[2]);
            }
            if (isset($values[3]) && $values[3] !== '') {
                array_push($args, '--dev', $values[3]);
            }
            $calls[] = routectl($args);
            if ($calls[0]['status'] === 0) {
                $calls[] = routectl(array('apply', '--peer', $values[0]));
            }
            break;
        case 'routes':
            if (count($values) != 1) {
                return null;
            }
            $calls[] = routectl(array('list', '--peer', $values[0]));
            $result['routes'] = peer_routes($calls[0]['output']);
            break;
        case 'list':
            $calls[] = routectl(array('list'));
            break;
        case 'del':
            if (count($values) != 2) {
                return null;
            }
            $calls[] = routectl(array('del', '--peer', $values[0], '--dst', $values[1]));
            break;
        case 'delete-user':
            if (count($values) != 1) {
                return null;
            }
            $calls[] = routectl(array('del', '--peer', $values[0], '--dst', 'all'));
            break;
        case 'apply':
            $calls[] = routectl(count($values) ? array('apply', '--peer', $values[0]) : array('apply'));
            break;
        default:
            return null;
    }
    $result['calls'] = $calls;
    $result['ok'] = count(array_filter($calls, function ($call) { return $call['status'] !== 0; })) === 0;
    return $result;
}

$result = run_action(isset($argv[1]) ? $argv[1] : '', array_slice($argv, 2));
if ($result === null) {
    fwrite(STDERR, "usage: php l2tp-routes-panel.php add PEER DST [GW [DEV]] | routes PEER | list | del PEER DST"
        . " | delete-user PEER | apply [PEER]\n");
    exit(2);
}
$result['user'] = trim(shell_exec('id -un'));
echo json_encode($result, JSON_UNESCAPED_SLASHES), "\n";
exit($result['ok'] ? 0 : 1);
