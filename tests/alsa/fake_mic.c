/*
 * A fake ALSA capture device for the live-capture tests (tests/capture.rs): an alsa-lib external
 * "ioplug" PCM that produces a 16-bit tone with noise, paced in real time by a timerfd like a
 * sound card, and that can vanish mid-run (every call answers -ENODEV and poll reports POLLERR
 * after `unplug_after_ms`), which is what a USB microphone pulled out of a Raspberry Pi looks
 * like to a program. It exercises the real path: alsa-lib -> cpal -> sfxtag's capture callback.
 *
 * Built by the test with `cc -shared -fPIC -DPIC fake_mic.c -lasound -lm` (-DPIC: a plugin, not a
 * static alsa-lib symbol table); used through an ALSA config:
 *   pcm_type.sfxtag_fake_mic { lib "/abs/libasound_module_pcm_sfxtag_fake_mic.so" }
 *   pcm.!default { type sfxtag_fake_mic rate 48000 channels 2 unplug_after_ms 4000 }
 */
#define _GNU_SOURCE
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef struct {
	snd_pcm_ioplug_t io;
	int timer_fd;
	struct timespec opened;  /* the unplug clock starts when the device is opened */
	struct timespec started; /* the capture clock starts at snd_pcm_start */
	long unplug_after_ms;    /* 0: never */
	double phase;
	uint32_t noise;
} fake_mic_t;

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int unplugged(const fake_mic_t *m)
{
	return m->unplug_after_ms > 0 && seconds_since(&m->opened) * 1000.0 >= m->unplug_after_ms;
}

static int fake_start(snd_pcm_ioplug_t *io)
{
	fake_mic_t *m = io->private_data;
	if (unplugged(m))
		return -ENODEV;
	clock_gettime(CLOCK_MONOTONIC, &m->started);
	long ns = (long)((double)io->period_size * 1e9 / io->rate);
	struct itimerspec its;
	memset(&its, 0, sizeof its);
	its.it_interval.tv_sec = ns / 1000000000L;
	its.it_interval.tv_nsec = ns % 1000000000L;
	its.it_value = its.it_interval;
	return timerfd_settime(m->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
}

static int fake_stop(snd_pcm_ioplug_t *io)
{
	fake_mic_t *m = io->private_data;
	struct itimerspec its;
	memset(&its, 0, sizeof its);
	timerfd_settime(m->timer_fd, 0, &its, NULL);
	return 0;
}

static int fake_prepare(snd_pcm_ioplug_t *io)
{
	return unplugged(io->private_data) ? -ENODEV : 0;
}

/* Hardware position: frames captured since start, wrapped at the buffer size. */
static snd_pcm_sframes_t fake_pointer(snd_pcm_ioplug_t *io)
{
	fake_mic_t *m = io->private_data;
	if (unplugged(m))
		return -ENODEV;
	if (io->state != SND_PCM_STATE_RUNNING)
		return 0;
	uint64_t frames = (uint64_t)(seconds_since(&m->started) * io->rate);
	return (snd_pcm_sframes_t)(frames % io->buffer_size);
}

/* Capture: writes `size` frames of a 440 Hz tone with noise, interleaved s16. */
static snd_pcm_sframes_t fake_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
				       snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	fake_mic_t *m = io->private_data;
	if (unplugged(m))
		return -ENODEV;
	int16_t *dst = (int16_t *)((char *)areas[0].addr + (areas[0].first + areas[0].step * offset) / 8);
	for (snd_pcm_uframes_t i = 0; i < size; i++) {
		m->noise = m->noise * 1664525u + 1013904223u;
		double n = ((double)(m->noise >> 8) / (double)(1u << 24)) * 2.0 - 1.0;
		double s = 0.3 * sin(m->phase) + 0.1 * n;
		m->phase += 2.0 * M_PI * 440.0 / io->rate;
		if (m->phase > 2.0 * M_PI)
			m->phase -= 2.0 * M_PI;
		for (unsigned c = 0; c < io->channels; c++)
			dst[i * io->channels + c] = (int16_t)(s * 32767.0);
	}
	return (snd_pcm_sframes_t)size;
}

static int fake_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int nfds,
			     unsigned short *revents)
{
	fake_mic_t *m = io->private_data;
	uint64_t ticks;
	(void)nfds;
	if (read(m->timer_fd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
		return -errno;
	if (unplugged(m)) {
		*revents = POLLERR;
		return 0;
	}
	*revents = (pfd[0].revents & POLLIN) ? POLLIN : 0;
	return 0;
}

static int fake_close(snd_pcm_ioplug_t *io)
{
	fake_mic_t *m = io->private_data;
	close(m->timer_fd);
	free(m);
	return 0;
}

static const snd_pcm_ioplug_callback_t fake_callbacks = {
	.start = fake_start,
	.stop = fake_stop,
	.prepare = fake_prepare,
	.pointer = fake_pointer,
	.transfer = fake_transfer,
	.poll_revents = fake_poll_revents,
	.close = fake_close,
};

SND_PCM_PLUGIN_DEFINE_FUNC(sfxtag_fake_mic)
{
	snd_config_iterator_t i, next;
	long rate = 48000, channels = 2, unplug_after_ms = 0;
	int err;
	(void)root;
	snd_config_for_each(i, next, conf) {
		snd_config_t *n = snd_config_iterator_entry(i);
		const char *id;
		if (snd_config_get_id(n, &id) < 0)
			continue;
		if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint"))
			continue;
		long *dst = !strcmp(id, "rate")		   ? &rate
			    : !strcmp(id, "channels")	   ? &channels
			    : !strcmp(id, "unplug_after_ms") ? &unplug_after_ms
							   : NULL;
		if (!dst || snd_config_get_integer(n, dst) < 0) {
			SNDERR("sfxtag_fake_mic: bad field %s", id);
			return -EINVAL;
		}
	}
	if (stream != SND_PCM_STREAM_CAPTURE)
		return -ENOENT; /* a microphone only */
	fake_mic_t *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->unplug_after_ms = unplug_after_ms;
	m->noise = 12345u;
	clock_gettime(CLOCK_MONOTONIC, &m->opened);
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (m->timer_fd < 0) {
		err = -errno;
		free(m);
		return err;
	}
	m->io.version = SND_PCM_IOPLUG_VERSION;
	m->io.name = "sfxtag fake microphone";
	m->io.callback = &fake_callbacks;
	m->io.private_data = m;
	m->io.poll_fd = m->timer_fd;
	m->io.poll_events = POLLIN;
	err = snd_pcm_ioplug_create(&m->io, name, stream, mode);
	if (err < 0) {
		close(m->timer_fd);
		free(m);
		return err;
	}
	static const unsigned int access[] = {SND_PCM_ACCESS_RW_INTERLEAVED};
	static const unsigned int formats[] = {SND_PCM_FORMAT_S16_LE};
	if ((err = snd_pcm_ioplug_set_param_list(&m->io, SND_PCM_IOPLUG_HW_ACCESS, 1, access)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(&m->io, SND_PCM_IOPLUG_HW_FORMAT, 1, formats)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(&m->io, SND_PCM_IOPLUG_HW_CHANNELS, channels,
						   channels)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(&m->io, SND_PCM_IOPLUG_HW_RATE, rate, rate)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(&m->io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 512,
						   65536)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(&m->io, SND_PCM_IOPLUG_HW_PERIODS, 2, 64)) < 0) {
		snd_pcm_ioplug_delete(&m->io);
		return err;
	}
	*pcmp = m->io.pcm;
	return 0;
}
SND_PCM_PLUGIN_SYMBOL(sfxtag_fake_mic);
