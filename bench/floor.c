/* floor: what any capture + Opus daemon must pay, and nothing else.
 *
 * Records a PulseAudio source with the libpulse asynchronous API on one thread
 * (pa_mainloop, pa_stream_peek/drop, s16le 48 kHz stereo, ADJUST_LATENCY, fragsize 20 ms),
 * cuts fixed frames and Opus-encodes them (64 kbit/s, libopus defaults otherwise),
 * then throws the packets away: no network, no copies beyond the frame buffer.
 * With -p PORT it first accepts one WebSocket client on 127.0.0.1:PORT (any request head is
 * answered with a bare 101, as bench/src/bin/fanout.rs does) and sends it each packet in the
 * daemon's wire format (u64 BE timestamp ms + codec byte 0x01 + Opus) with one send() from
 * the read callback: the floor of a daemon that streams to one client, kernel TCP included.
 *
 * With -g it runs on a GLib main loop through libpulse-mainloop-glib, as novnc-audio does
 * (its source may recurse, as the daemon lets it): what the daemon's main loop costs.
 *
 * usage: floor [-d SOURCE] [-a lowdelay|audio] [-f FRAME_MS] [-b BPS] [-l FRAG_USEC]
 *              [-t SECONDS] [-p PORT] [-g]
 * SIGTERM/SIGINT or -t end it; it prints one line on stdout: frames, bytes, holes, and the
 * time from start to the first data and the first encoded frame (ms).
 * Built by bench/run.sh: cc -O2 floor.c $(pkg-config --cflags --libs libpulse
 * libpulse-mainloop-glib opus)
 */
#include <arpa/inet.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <opus/opus.h>
#include <pulse/glib-mainloop.h>
#include <pulse/pulseaudio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RATE 48000
#define CHANNELS 2

static const char *source = "bench.monitor";
static int application = OPUS_APPLICATION_RESTRICTED_LOWDELAY;
static double frame_ms = 20.0;
static int bitrate = 64000;
static int frag_usec = 20000;

static pa_mainloop *ml;
static GMainLoop *gloop; /* -g */
static OpusEncoder *enc;
static int16_t *frame;
static size_t frame_samples; /* per channel */
static size_t filled;        /* samples per channel in `frame` */
static unsigned long frames, bytes, holes;
/* Room for a WebSocket header (up to 4) + timestamp (8) + codec (1), then Opus. */
#define WS_HEAD 13
static unsigned char message[WS_HEAD + 4000];
static unsigned char *const packet = message + WS_HEAD;
static int client = -1; /* -p: the one client's socket */
static unsigned long send_drops;
static pa_usec_t t_start, t_first_data, t_first_frame;

static void die(const char *what) {
    fprintf(stderr, "floor: %s\n", what);
    exit(1);
}

/* One binary WebSocket message per frame, framed as novnc-audio frames it: the header is
 * written just before the timestamp, 2 bytes below 126 bytes of payload, else 4. */
static void send_frame(size_t n) {
    size_t payload = 9 + n;
    uint64_t ts = (uint64_t)(frames * frame_ms);
    unsigned char *m = message + 4;
    for (int i = 0; i < 8; i++)
        m[i] = (unsigned char)(ts >> (56 - 8 * i));
    m[8] = 0x01;
    if (payload < 126) {
        m -= 2;
        m[1] = (unsigned char)payload;
    } else {
        m -= 4;
        m[1] = 126;
        m[2] = (unsigned char)(payload >> 8);
        m[3] = (unsigned char)payload;
    }
    m[0] = 0x82;
    size_t len = (size_t)(packet + n - m);
    if (send(client, m, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len)
        send_drops++;
}

/* -p: accept one client, answer its request head with a 101. */
static int accept_client(int port) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0)
        die("cannot listen on the -p port");
    printf("LISTENING\n");
    fflush(stdout);
    int c = accept(l, NULL, NULL);
    if (c < 0)
        die("accept failed");
    close(l);
    char head[4096];
    size_t got = 0;
    while (got < sizeof head - 1) {
        ssize_t r = read(c, head + got, sizeof head - 1 - got);
        if (r <= 0)
            die("the client went away before its request");
        got += (size_t)r;
        head[got] = 0;
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    if (write(c, ok, sizeof ok - 1) != (ssize_t)(sizeof ok - 1))
        die("cannot answer the client");
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

static void encode_bytes(const uint8_t *p, size_t n) {
    const size_t fbytes = CHANNELS * sizeof(int16_t);
    while (n >= fbytes) {
        size_t want = frame_samples - filled;
        size_t have = n / fbytes;
        size_t take = have < want ? have : want;
        memcpy(frame + filled * CHANNELS, p, take * fbytes);
        filled += take;
        p += take * fbytes;
        n -= take * fbytes;
        if (filled == frame_samples) {
            opus_int32 r = opus_encode(enc, frame, (int)frame_samples, packet, 4000);
            if (r < 0)
                die(opus_strerror(r));
            if (client >= 0)
                send_frame((size_t)r);
            if (!frames)
                t_first_frame = pa_rtclock_now();
            frames++;
            bytes += (unsigned long)r;
            filled = 0;
        }
    }
}

static void read_cb(pa_stream *s, size_t nbytes, void *u) {
    (void)nbytes;
    (void)u;
    const void *data;
    size_t n;
    while (pa_stream_readable_size(s) > 0) {
        if (pa_stream_peek(s, &data, &n) < 0)
            die("pa_stream_peek failed");
        if (n == 0)
            break;
        if (!t_first_data)
            t_first_data = pa_rtclock_now();
        if (data)
            encode_bytes(data, n);
        else
            holes++;
        pa_stream_drop(s);
    }
}

static void stream_state_cb(pa_stream *s, void *u) {
    (void)u;
    if (pa_stream_get_state(s) == PA_STREAM_FAILED)
        die("record stream failed");
}

static void context_state_cb(pa_context *c, void *u) {
    (void)u;
    switch (pa_context_get_state(c)) {
    case PA_CONTEXT_READY: {
        pa_sample_spec ss = {PA_SAMPLE_S16LE, RATE, CHANNELS};
        pa_buffer_attr attr;
        memset(&attr, 0xff, sizeof attr);
        attr.fragsize = (uint32_t)pa_usec_to_bytes((pa_usec_t)frag_usec, &ss);
        pa_stream *s = pa_stream_new(c, "floor", &ss, NULL);
        if (!s)
            die("pa_stream_new failed");
        pa_stream_set_state_callback(s, stream_state_cb, NULL);
        pa_stream_set_read_callback(s, read_cb, NULL);
        if (pa_stream_connect_record(s, source, &attr, PA_STREAM_ADJUST_LATENCY) < 0)
            die("pa_stream_connect_record failed");
        break;
    }
    case PA_CONTEXT_FAILED:
    case PA_CONTEXT_TERMINATED:
        die("PulseAudio connection failed");
    default:
        break;
    }
}

static void quit_cb(pa_mainloop_api *api, void *u) {
    (void)u;
    api->quit(api, 0);
}

static void signal_cb(pa_mainloop_api *api, pa_signal_event *e, int sig, void *u) {
    (void)e;
    (void)sig;
    quit_cb(api, u);
}

static void timer_cb(pa_mainloop_api *api, pa_time_event *e, const struct timeval *tv, void *u) {
    (void)e;
    (void)tv;
    quit_cb(api, u);
}

static gboolean glib_quit(gpointer u) {
    (void)u;
    g_main_loop_quit(gloop);
    return G_SOURCE_REMOVE;
}

int main(int argc, char **argv) {
    double seconds = 0;
    int opt, port = 0, use_glib = 0;
    while ((opt = getopt(argc, argv, "d:a:f:b:l:t:p:g")) != -1) {
        switch (opt) {
        case 'd': source = optarg; break;
        case 'a':
            if (!strcmp(optarg, "audio"))
                application = OPUS_APPLICATION_AUDIO;
            else if (!strcmp(optarg, "lowdelay"))
                application = OPUS_APPLICATION_RESTRICTED_LOWDELAY;
            else
                die("-a: audio or lowdelay");
            break;
        case 'f': frame_ms = atof(optarg); break;
        case 'b': bitrate = atoi(optarg); break;
        case 'l': frag_usec = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'p': port = atoi(optarg); break;
        case 'g': use_glib = 1; break;
        default:
            fprintf(stderr, "usage: floor [-d SOURCE] [-a lowdelay|audio] [-f MS] [-b BPS] "
                            "[-l FRAG_USEC] [-t SECONDS] [-p PORT] [-g]\n");
            return 2;
        }
    }
    if (port)
        client = accept_client(port);
    frame_samples = (size_t)(RATE * frame_ms / 1000.0);
    frame = calloc(frame_samples * CHANNELS, sizeof *frame);
    int err;
    enc = opus_encoder_create(RATE, CHANNELS, application, &err);
    if (err != OPUS_OK)
        die(opus_strerror(err));
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));

    pa_mainloop_api *api;
    pa_glib_mainloop *gml = NULL;
    if (use_glib) {
        gml = pa_glib_mainloop_new(NULL);
        /* pa_glib_mainloop begins with its GSource (pulse/glib-mainloop.c). */
        g_source_set_can_recurse((GSource *)gml, TRUE);
        api = pa_glib_mainloop_get_api(gml);
        gloop = g_main_loop_new(NULL, FALSE);
        g_unix_signal_add(SIGTERM, glib_quit, NULL);
        g_unix_signal_add(SIGINT, glib_quit, NULL);
        if (seconds > 0)
            g_timeout_add((guint)(seconds * 1000), glib_quit, NULL);
    } else {
        ml = pa_mainloop_new();
        api = pa_mainloop_get_api(ml);
        pa_signal_init(api);
        pa_signal_new(SIGTERM, signal_cb, NULL);
        pa_signal_new(SIGINT, signal_cb, NULL);
        if (seconds > 0) {
            struct timeval tv;
            pa_gettimeofday(&tv);
            pa_timeval_add(&tv, (pa_usec_t)(seconds * 1e6));
            api->time_new(api, &tv, timer_cb, NULL);
        }
    }
    t_start = pa_rtclock_now();
    pa_context *c = pa_context_new(api, "bench-floor");
    pa_context_set_state_callback(c, context_state_cb, NULL);
    if (pa_context_connect(c, NULL, PA_CONTEXT_NOAUTOSPAWN, NULL) < 0)
        die("pa_context_connect failed");
    int ret = 0;
    if (use_glib)
        g_main_loop_run(gloop);
    else
        pa_mainloop_run(ml, &ret);
    printf("frames=%lu bytes=%lu holes=%lu first_data_ms=%.2f first_frame_ms=%.2f "
           "send_drops=%lu\n",
           frames, bytes, holes, t_first_data ? (t_first_data - t_start) / 1000.0 : -1.0,
           t_first_frame ? (t_first_frame - t_start) / 1000.0 : -1.0, send_drops);
    fflush(stdout);
    pa_context_set_state_callback(c, NULL, NULL);
    pa_context_disconnect(c);
    pa_context_unref(c);
    if (use_glib) {
        pa_glib_mainloop_free(gml);
        g_main_loop_unref(gloop);
    } else {
        pa_signal_done();
        pa_mainloop_free(ml);
    }
    opus_encoder_destroy(enc);
    return 0;
}
