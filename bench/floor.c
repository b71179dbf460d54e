/* floor: what any capture + Opus daemon must pay, and nothing else.
 *
 * Records a PulseAudio source with the libpulse asynchronous API on one thread
 * (pa_mainloop, pa_stream_peek/drop, s16le 48 kHz stereo, ADJUST_LATENCY, fragsize 20 ms),
 * cuts fixed frames and Opus-encodes them (64 kbit/s, libopus defaults otherwise),
 * then throws the packets away: no network, no copies beyond the frame buffer.
 *
 * usage: floor [-d SOURCE] [-a lowdelay|audio] [-f FRAME_MS] [-b BPS] [-l FRAG_USEC]
 *              [-t SECONDS]
 * SIGTERM/SIGINT or -t end it; it prints one line on stdout: frames, bytes, holes, and the
 * time from start to the first data and the first encoded frame (ms).
 * Built by bench/run.sh: cc -O2 floor.c $(pkg-config --cflags --libs libpulse opus)
 */
#include <opus/opus.h>
#include <pulse/pulseaudio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RATE 48000
#define CHANNELS 2

static const char *source = "bench.monitor";
static int application = OPUS_APPLICATION_RESTRICTED_LOWDELAY;
static double frame_ms = 20.0;
static int bitrate = 64000;
static int frag_usec = 20000;

static pa_mainloop *ml;
static OpusEncoder *enc;
static int16_t *frame;
static size_t frame_samples; /* per channel */
static size_t filled;        /* samples per channel in `frame` */
static unsigned long frames, bytes, holes;
static unsigned char packet[4000];
static pa_usec_t t_start, t_first_data, t_first_frame;

static void die(const char *what) {
    fprintf(stderr, "floor: %s\n", what);
    exit(1);
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
            opus_int32 r = opus_encode(enc, frame, (int)frame_samples, packet, sizeof packet);
            if (r < 0)
                die(opus_strerror(r));
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

int main(int argc, char **argv) {
    double seconds = 0;
    int opt;
    while ((opt = getopt(argc, argv, "d:a:f:b:l:t:")) != -1) {
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
        default:
            fprintf(stderr, "usage: floor [-d SOURCE] [-a lowdelay|audio] [-f MS] [-b BPS] "
                            "[-l FRAG_USEC] [-t SECONDS]\n");
            return 2;
        }
    }
    frame_samples = (size_t)(RATE * frame_ms / 1000.0);
    frame = calloc(frame_samples * CHANNELS, sizeof *frame);
    int err;
    enc = opus_encoder_create(RATE, CHANNELS, application, &err);
    if (err != OPUS_OK)
        die(opus_strerror(err));
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));

    ml = pa_mainloop_new();
    pa_mainloop_api *api = pa_mainloop_get_api(ml);
    pa_signal_init(api);
    pa_signal_new(SIGTERM, signal_cb, NULL);
    pa_signal_new(SIGINT, signal_cb, NULL);
    if (seconds > 0) {
        struct timeval tv;
        pa_gettimeofday(&tv);
        pa_timeval_add(&tv, (pa_usec_t)(seconds * 1e6));
        api->time_new(api, &tv, timer_cb, NULL);
    }
    t_start = pa_rtclock_now();
    pa_context *c = pa_context_new(api, "bench-floor");
    pa_context_set_state_callback(c, context_state_cb, NULL);
    if (pa_context_connect(c, NULL, PA_CONTEXT_NOAUTOSPAWN, NULL) < 0)
        die("pa_context_connect failed");
    int ret = 0;
    pa_mainloop_run(ml, &ret);
    printf("frames=%lu bytes=%lu holes=%lu first_data_ms=%.2f first_frame_ms=%.2f\n", frames,
           bytes, holes, t_first_data ? (t_first_data - t_start) / 1000.0 : -1.0,
           t_first_frame ? (t_first_frame - t_start) / 1000.0 : -1.0);
    fflush(stdout);
    pa_context_set_state_callback(c, NULL, NULL);
    pa_context_disconnect(c);
    pa_context_unref(c);
    pa_signal_done();
    pa_mainloop_free(ml);
    opus_encoder_destroy(enc);
    return 0;
}
