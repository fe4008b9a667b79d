# Shared by the fake cluster tools in this folder (kind, kubectl, helm, istioctl, docker).
# Sourced, not run. Each fake:
#   1. records its argv as one line of $MESHPROOF_FAKE_LOG: the tool name and each argument,
#      separated by tabs (arguments never hold tabs in meshproof's calls);
#   2. when its arguments hold `-f -` (or `exec -i`), saves stdin to $MESHPROOF_FAKE_LOG.stdin/<n>, where n is the
#      0-based index of the call in the log (so a test can see that a secret went on stdin; with
#      calls at the same time the index is approximate, the fake's own answer is not);
#   3. answers from the first matching rule of $MESHPROOF_FAKE_RULES, if any: lines of
#      PATTERN<US>EXIT<US>STDOUT<US>STDERR[<US>TIMES] (US = \037), where PATTERN is a shell glob
#      matched against "tool arg1 arg2 ...", STDOUT/STDERR are printf %b text, and TIMES (optional)
#      limits the rule to its first TIMES matches (state in $MESHPROOF_FAKE_STATE);
#   4. otherwise answers like the real tool would for the call (see each fake).
# State (kind's clusters, rule counters) lives in $MESHPROOF_FAKE_STATE (default: beside the log).

set -u

fake_begin() {
    FAKE_TOOL="$1"
    shift
    FAKE_LOG="${MESHPROOF_FAKE_LOG:-/dev/null}"
    FAKE_STATE="${MESHPROOF_FAKE_STATE:-${FAKE_LOG}.state}"
    [ "$FAKE_LOG" = /dev/null ] && FAKE_STATE="${TMPDIR:-/tmp}/meshproof-fake-state"
    mkdir -p "$FAKE_STATE"
    FAKE_INDEX=0
    if [ -f "$FAKE_LOG" ]; then
        FAKE_INDEX=$(wc -l < "$FAKE_LOG" | tr -d ' ')
    fi
    line="$FAKE_TOOL"
    for arg in "$@"; do
        line="$line$(printf '\t')$arg"
    done
    printf '%s\n' "$line" >> "$FAKE_LOG"
    FAKE_JOINED="$FAKE_TOOL $*"
    FAKE_STDIN=""
    previous=""
    for arg in "$@"; do
        if { [ "$previous" = "-f" ] && [ "$arg" = "-" ]; } || { [ "$previous" = "exec" ] && [ "$arg" = "-i" ]; }; then
            mkdir -p "$FAKE_LOG.stdin"
            # Read into a file of this process's own: fakes called at the same time may compute
            # the same index, and must not answer from each other's stdin.
            FAKE_STDIN="$FAKE_LOG.stdin/pid-$$"
            trap 'rm -f "$FAKE_STDIN"' EXIT
            cat > "$FAKE_STDIN"
            cp "$FAKE_STDIN" "$FAKE_LOG.stdin/$FAKE_INDEX"
        fi
        previous="$arg"
    done
    fake_rules
}

fake_rules() {
    rules="${MESHPROOF_FAKE_RULES:-}"
    [ -n "$rules" ] && [ -f "$rules" ] || return 0
    us=$(printf '\037')
    n=0
    while IFS="$us" read -r pattern code out err times; do
        n=$((n + 1))
        case "$pattern" in '' | '#'*) continue ;; esac
        # shellcheck disable=SC2254 # the pattern is a glob on purpose
        case "$FAKE_JOINED" in
            $pattern)
                if [ -n "${times:-}" ]; then
                    counter="$FAKE_STATE/rule-$n"
                    used=$(cat "$counter" 2>/dev/null || echo 0)
                    [ "$used" -ge "$times" ] && continue
                    echo $((used + 1)) > "$counter"
                fi
                printf '%b' "$out"
                printf '%b' "$err" >&2
                exit "$code"
                ;;
        esac
    done < "$rules"
}

# The value after FLAG in the arguments, or empty.
fake_flag() {
    flag="$1"
    shift
    previous=""
    for arg in "$@"; do
        if [ "$previous" = "$flag" ]; then
            printf '%s' "$arg"
            return 0
        fi
        previous="$arg"
    done
}

fake_unknown() {
    echo "fake $FAKE_TOOL: no canned answer for: $FAKE_JOINED (add a rule to MESHPROOF_FAKE_RULES)" >&2
    exit 99
}
