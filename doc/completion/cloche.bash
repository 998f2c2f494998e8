# bash completion for cloche(1)                               -*- shell-script -*-
# Installed as share/bash-completion/completions/cloche.

_cloche_handles()
{
    local IFS=$'\n'
    COMPREPLY+=($(compgen -W "$("${COMP_WORDS[0]}" "${_cloche_global[@]}" ls -q 2>/dev/null)" -- "$cur"))
}

_cloche()
{
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()

    local commands="ping capacity create ls list info stop destroy rm run exec attach kill cp limits metrics net-in net-out props images pull build start restart logs events help"
    local global_opts="--host --socket --token-file --json --help --version"

    # Find the command word, skipping global options (and their arguments).
    _cloche_global=()
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -H | --host | -s | --socket | --token-file)
            _cloche_global+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}")
            ((i++))
            ;;
        -*) ;;
        *)
            cmd=${COMP_WORDS[i]}
            break
            ;;
        esac
    done

    if [[ -z $cmd ]]; then
        case $prev in
        --socket | -s | --token-file)
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        --host | -H) return ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    local opts=
    case $cmd in
    create) opts="--image --memory --cpus --cpu-weight --pids --disk --bandwidth --env --bind --property --network --grace --privileged --publish --service --service-cmd --restart --max-restarts" ;;
    restart) opts="--kill" ;;
    logs) opts="--follow --tail --since --process --timestamps" ;;
    events) opts="--follow --since --handle" ;;
    ls | list) opts="--filter --all --quiet" ;;
    stop) opts="--kill" ;;
    run | exec) opts="--interactive --tty --detach --user --env --workdir --id" ;;
    attach) opts="--interactive --tty" ;;
    kill) opts="--signal" ;;
    cp) opts="--user" ;;
    limits) opts="--memory --cpus --cpu-weight --pids --disk --bandwidth" ;;
    metrics) opts="--history --since" ;;
    net-out) opts="--protocol --network --port --icmp-type --icmp-code --log" ;;
    images) opts="--quiet --output --change --no-layer" ;;
    build) opts="--tag --file --build-arg --no-cache --quiet" ;;
    pull) opts="--username --password-stdin" ;;
    help)
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
        ;;
    esac
    opts="$opts --json --help"

    case $prev in
    --signal | -s)
        COMPREPLY=($(compgen -W "TERM KILL INT HUP QUIT USR1 USR2 STOP CONT WINCH" -- "$cur"))
        return
        ;;
    --restart)
        COMPREPLY=($(compgen -W "no on-failure always unless-stopped" -- "$cur"))
        return
        ;;
    --handle)
        _cloche_handles
        return
        ;;
    --protocol)
        COMPREPLY=($(compgen -W "all tcp udp icmp" -- "$cur"))
        return
        ;;
    --bind | -b)
        COMPREPLY=($(compgen -d -- "$cur"))
        return
        ;;
    --file | --output | -o)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    --image | --memory | -m | --cpus | --cpu-weight | --pids | --disk | --bandwidth | --env | -e | \
        --property | -p | --network | -n | --grace | -g | --publish | -P | --filter | -f | \
        --user | -u | --workdir | -w | --id | --since | --port | --icmp-type | --icmp-code | \
        --username | --tag | -t | --build-arg | --change | -c | --service-cmd | --max-restarts | \
        --tail | -n | --process)
        return
        ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi

    # Positional words after the command.
    local words=() w
    for ((w = i + 1; w < COMP_CWORD; w++)); do
        [[ ${COMP_WORDS[w]} == -* ]] || words+=("${COMP_WORDS[w]}")
    done
    case $cmd in
    limits | props)
        if ((${#words[@]} == 0)); then
            if [[ $cmd == limits ]]; then COMPREPLY=($(compgen -W "set" -- "$cur")); else
                COMPREPLY=($(compgen -W "get set rm" -- "$cur")); fi
            _cloche_handles
        elif ((${#words[@]} == 1)) && [[ ${words[0]} == @(set|get|rm) ]]; then
            _cloche_handles
        elif [[ $cmd == limits ]] && ((${#words[@]} == 1)); then
            COMPREPLY=($(compgen -W "memory cpu pids disk bandwidth" -- "$cur"))
        fi
        ;;
    run | exec | attach | kill | metrics | net-in | net-out | create | logs)
        ((${#words[@]} == 0)) && [[ $cmd != create ]] && _cloche_handles
        ;;
    info | stop | destroy | rm | start | restart)
        _cloche_handles
        ;;
    cp)
        COMPREPLY=($(compgen -f -- "$cur"))
        ;;
    build)
        COMPREPLY=($(compgen -d -- "$cur"))
        ;;
    images)
        if ((${#words[@]} == 0)); then
            COMPREPLY=($(compgen -W "rm import export commit" -- "$cur"))
        elif [[ ${words[0]} == import ]] && ((${#words[@]} == 1)); then
            COMPREPLY=($(compgen -f -- "$cur"))
        elif [[ ${words[0]} == commit ]] && ((${#words[@]} == 1)); then
            _cloche_handles
        else
            local IFS=$'\n'
            COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${_cloche_global[@]}" images -q 2>/dev/null)" -- "$cur"))
        fi
        ;;
    esac
} &&
    complete -F _cloche cloche
