/*
 * The first process inside a sandbox: the model bridge, the run's limits, then the agent.
 *
 * The native build of bridge.py, with the same command line and behaviour:
 *
 *     bridge --port P --socket S [--rlimit NAME=N ...] -- argv...
 *
 * It listens on 127.0.0.1:P in the sandbox's own network namespace (where nothing else is
 * reachable) and relays every connection to the host-side proxy's Unix socket S, the
 * sandbox's only way out. The agent is started as its child with the limits applied; the
 * bridge exits with the agent's status (128 + the signal that killed it), and bubblewrap
 * then tears the sandbox's PID namespace down with every process the agent left behind.
 * SIGTERM, SIGINT and SIGHUP are passed on to the agent.
 *
 * It exists because the interpreter's start-up was most of a sandbox's: the server builds
 * it with the system's C compiler when there is one, and uses bridge.py otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#define CHUNK 65536
#define MAX_LIMITS 8

static const char *socket_path;
static volatile pid_t agent;

struct limit {
    int resource;
    rlim_t value;
};

struct pump {
    int src, dst;
};

static void die(int code, const char *what, const char *detail) {
    fprintf(stderr, "agentyard bridge: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(code);
}

static int resource_named(const char *name) {
    if (strcmp(name, "nproc") == 0) return RLIMIT_NPROC;
    if (strcmp(name, "nofile") == 0) return RLIMIT_NOFILE;
    if (strcmp(name, "fsize") == 0) return RLIMIT_FSIZE;
    if (strcmp(name, "core") == 0) return RLIMIT_CORE;
    return -1;
}

static unsigned long long number(const char *text) {
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-') die(2, "not a number", text);
    return value;
}

/* One direction of a connection; the write side is shut when the read side ends. */
static void pump(int src, int dst) {
    char buffer[CHUNK];
    for (;;) {
        ssize_t got = recv(src, buffer, sizeof buffer, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (ssize_t sent = 0; sent < got;) {
            ssize_t n = send(dst, buffer + sent, (size_t)(got - sent), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) goto done;
            sent += n;
        }
    }
done:
    shutdown(dst, SHUT_WR);
}

static void *pump_back(void *arg) {
    struct pump *p = arg;
    pump(p->src, p->dst);
    return NULL;
}

static pthread_attr_t joinable, detached; /* small stacks: a relay needs little */

static void *relay(void *arg) {
    int conn = (int)(long)arg;
    int upstream = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, socket_path, sizeof address.sun_path - 1);
    if (upstream < 0 || connect(upstream, (struct sockaddr *)&address, sizeof address) < 0) {
        close(conn);
        if (upstream >= 0) close(upstream);
        return NULL;
    }
    struct pump back = {upstream, conn};
    pthread_t thread;
    if (pthread_create(&thread, &joinable, pump_back, &back) != 0) {
        close(conn);
        close(upstream);
        return NULL;
    }
    pump(conn, upstream);
    pthread_join(thread, NULL);
    close(conn);
    close(upstream);
    return NULL;
}

static void *serve(void *arg) {
    int listener = (int)(long)arg;
    for (;;) {
        int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL;
        }
        int one = 1;
        setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t thread;
        if (pthread_create(&thread, &detached, relay, (void *)(long)conn) != 0) close(conn);
    }
}

static void pass_on(int sig) {
    if (agent > 0) kill(agent, sig);
}

int main(int argc, char **argv) {
    int port = 0;
    struct limit limits[MAX_LIMITS];
    int nlimits = 0;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        if (i + 1 >= argc) die(2, "missing value of", argv[i]);
        const char *flag = argv[i], *value = argv[i + 1];
        if (strcmp(flag, "--port") == 0) {
            unsigned long long p = number(value);
            if (p > 65535) die(2, "not a port", value);
            port = (int)p;
        } else if (strcmp(flag, "--socket") == 0) {
            if (strlen(value) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                die(2, "socket path too long", value);
            socket_path = value;
        } else if (strcmp(flag, "--rlimit") == 0) {
            const char *eq = strchr(value, '=');
            char name[16];
            if (!eq || (size_t)(eq - value) >= sizeof name) die(2, "bad limit", value);
            memcpy(name, value, (size_t)(eq - value));
            name[eq - value] = '\0';
            int resource = resource_named(name);
            if (resource < 0) die(2, "unknown limit", name);
            if (nlimits == MAX_LIMITS) die(2, "too many limits", value);
            limits[nlimits].resource = resource;
            limits[nlimits].value = (rlim_t)number(eq + 1);
            nlimits++;
        } else {
            die(2, "unknown option", flag);
        }
    }
    if (i + 1 >= argc) die(2, "no command", NULL);
    char **command = argv + i + 1;

    int listener = -1;
    if (port && socket_path) {
        /* Listening before the agent starts: its first request can never be refused. */
        listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(listener, (struct sockaddr *)&address, sizeof address) < 0 ||
            listen(listener, 128) < 0)
            die(126, "cannot listen", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) die(126, "cannot fork", strerror(errno));
    if (pid == 0) {
        for (int k = 0; k < nlimits; k++) {
            struct rlimit rl = {limits[k].value, limits[k].value};
            if (setrlimit(limits[k].resource, &rl) < 0) {
                fprintf(stderr, "agentyard sandbox: cannot set a limit: %s\n", strerror(errno));
                _exit(127);
            }
        }
        execvp(command[0], command);
        fprintf(stderr, "agentyard sandbox: cannot start '%s': %s\n", command[0], strerror(errno));
        _exit(127);
    }
    agent = pid;
    struct sigaction action = {.sa_handler = pass_on, .sa_flags = SA_RESTART};
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    if (listener >= 0) {
        pthread_attr_init(&joinable);
        pthread_attr_setstacksize(&joinable, 4 * CHUNK);
        pthread_attr_init(&detached);
        pthread_attr_setstacksize(&detached, 4 * CHUNK);
        pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
        pthread_t thread;
        if (pthread_create(&thread, &detached, serve, (void *)(long)listener) != 0)
            die(126, "cannot start the relay", NULL);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) die(126, "lost the agent", strerror(errno));
    }
    _exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
}
