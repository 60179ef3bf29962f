# Shared helpers for the launchers in this directory: shell quoting, the
# "run or print under --dry-run" helper and the option parser. Sourced, not run.
# shellcheck shell=bash

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  echo "$(basename "$0"): error: needs bash >= 4.4, this is $BASH_VERSION (on macOS: brew install bash)" >&2
  exit 2
fi

LAUNCH_DRY_RUN=0
# Flags of resnet_jax.main that a launcher sets itself; scripts append to it.
LAUNCH_OWNED_MAIN_FLAGS=(--config --workdir)

launch::die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

launch::log() {
  echo "$(basename "$0"): $*" >&2
}

# Quotes one word so that a POSIX shell reads it back unchanged; words made of
# safe characters stay bare and only a flag's value is quoted, so dry-run output
# reads like a hand-typed command.
launch::quote() {
  local word=$1
  if [[ $word =~ ^--[A-Za-z0-9_.-]+=(.*)$ ]]; then
    printf '%s=%s' "${word%%=*}" "$(launch::quote "${BASH_REMATCH[1]}")"
  elif [[ -n $word && $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$word"
  elif [[ $word == *\'* && $word != *[\$\`\"\\!]* ]]; then
    # A remote --command holding quoted words reads better in double quotes.
    printf '"%s"' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Prints its arguments as one shell-quoted command line.
launch::join() {
  local words=() word IFS=' '
  for word in "$@"; do
    words+=("$(launch::quote "$word")")
  done
  printf '%s\n' "${words[*]}"
}

# Runs a command, or under --dry-run prints it instead. Real runs echo the
# command to stderr first so a job log shows what ran.
launch::run() {
  if ((LAUNCH_DRY_RUN)); then
    launch::join "$@"
  else
    echo "+ $(launch::join "$@")" >&2
    "$@"
  fi
}

# Like launch::run for a script's last command, but replaces the shell so the
# trainer receives SIGTERM itself (preemption) and its exit status (42) is ours.
launch::exec() {
  if ((LAUNCH_DRY_RUN)); then
    launch::join "$@"
    exit 0
  fi
  echo "+ $(launch::join "$@")" >&2
  exec "$@"
}

# Under --dry-run, prints a comment line explaining a step that depends on
# state only a real run can see; copy-pasting the output stays valid shell.
launch::note() {
  if ((LAUNCH_DRY_RUN)); then
    echo "# $*"
  fi
}

# Parses the launcher's own options, which come before CONFIG; the words from
# CONFIG on land in LAUNCH_ARGS. The calling script declares two associative
# arrays mapping each option to the variable it sets:
#   LAUNCH_VALUE_OPTIONS  options taking a value (--name VALUE or --name=VALUE)
#   LAUNCH_SWITCH_OPTIONS options without one (the variable is set to 1)
# and a `usage` function, printed for -h/--help. --dry-run is always accepted.
launch::parse_args() {
  LAUNCH_ARGS=()
  LAUNCH_SWITCH_OPTIONS['--dry-run']=LAUNCH_DRY_RUN
  # Prefixed locals: printf -v below must not assign to them instead of the
  # caller's variables.
  local _launch_word _launch_name
  while (($#)); do
    _launch_word=$1
    _launch_name=${_launch_word%%=*}
    case $_launch_word in
      -h | --help)
        usage
        exit 0
        ;;
      --)
        shift
        LAUNCH_ARGS=("$@")
        return
        ;;
      -*)
        if [[ -v LAUNCH_VALUE_OPTIONS[$_launch_name] ]]; then
          if [[ $_launch_word == *=* ]]; then
            printf -v "${LAUNCH_VALUE_OPTIONS[$_launch_name]}" '%s' "${_launch_word#*=}"
          elif (($# < 2)); then
            launch::die "$_launch_name needs a value"
          else
            printf -v "${LAUNCH_VALUE_OPTIONS[$_launch_name]}" '%s' "$2"
            shift
          fi
        elif [[ -v LAUNCH_SWITCH_OPTIONS[$_launch_name] ]]; then
          [[ $_launch_word == "$_launch_name" ]] || launch::die "$_launch_name takes no value, got $_launch_word"
          printf -v "${LAUNCH_SWITCH_OPTIONS[$_launch_name]}" '%s' 1
        else
          launch::die "unknown flag $_launch_name (see --help; flags for resnet_jax.main go after CONFIG WORKDIR)"
        fi
        ;;
      *)
        LAUNCH_ARGS=("$@")
        return
        ;;
    esac
    shift
  done
}

# Checks the words after the launcher's options: CONFIG, WORKDIR, then flags
# for resnet_jax.main, passed through unchanged. Catches launcher options put
# after CONFIG and the main flags in LAUNCH_OWNED_MAIN_FLAGS.
launch::check_main_args() {
  local word name flag
  if ((${#LAUNCH_ARGS[@]} < 2)); then
    launch::die "expected CONFIG and WORKDIR, e.g. experiments/cifar10.py:resnet20 /tmp/resnet20 (see --help)"
  fi
  for word in "${LAUNCH_ARGS[@]:2}"; do
    name=${word%%=*}
    if [[ -v LAUNCH_VALUE_OPTIONS[$name] || -v LAUNCH_SWITCH_OPTIONS[$name] ]]; then
      launch::die "$name is an option of $(basename "$0"); put it before CONFIG"
    fi
    for flag in "${LAUNCH_OWNED_MAIN_FLAGS[@]}"; do
      if [[ $name == "$flag" || $name == "--no${flag#--}" ]]; then
        launch::die "$name is set by $(basename "$0") itself; do not pass it after CONFIG WORKDIR"
      fi
    done
  done
}

# Fails early, before any machine is started, if CONFIG's file is missing.
launch::check_config() {
  local config=$1 base=${2:-.}
  local path=${config%%:*}
  if [[ $path != *.py ]]; then
    launch::die "CONFIG must be PATH.py[:VARIANTS], e.g. experiments/cifar10.py:resnet56,bf16; got $config"
  fi
  [[ $path == /* ]] || path=$base/$path
  if [[ ! -f $path ]]; then
    launch::die "config file $path not found"
  fi
}
