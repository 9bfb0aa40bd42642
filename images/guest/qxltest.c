/*
 * qxltest: guest-side test programs for the QXL end-to-end tests (one static binary, subcommands).
 *
 * Written for this project from the Linux UAPI facts (ioctl numbers and struct layouts of
 * include/uapi/drm/drm.h, drm_mode.h and linux/fb.h); no libdrm. Every line it prints for the host
 * starts with "QXL-TEST: " so tests can grep the serial log.
 *
 *   qxltest fb      [--hold S]             fill /dev/fb0 with picture "fb" (mmap), report geometry
 *   qxltest kms     [--hold S]             dumb buffer: picture "kms0", SETCRTC, then rectangles of
 *                                          "kms1" flushed with DIRTYFB clips
 *   qxltest cursor  [--hold S] [--wait-ms M]  kms0 on screen, M ms (default 2000) later a 64x64
 *                                          ARGB cursor via MODE_CURSOR, then 3 moves 300 ms apart
 *   qxltest modes   [--watch S]            list connectors/modes, print preferred mode changes
 *   qxltest redraw  [--frames N] [--interval-ms M] [--wait-ms W] [--scroll K] [--workload NAME]
 *                                          kms0 shown, W ms (default 3000) later a timed loop of
 *                                          N frames; NAME (default redraw) is one of
 *                                            redraw  full-screen pic_redraw(f)
 *                                            scroll  a text page moving K rows a frame (pic_page)
 *                                            text    a console: one text line a frame, top to
 *                                                    bottom, the page cleared when full
 *                                            photo   a slideshow: full-screen pic_photo(f)
 *                                            video   a 480x270 (at most the screen) area in the
 *                                                    middle showing pic_photo(f), the rest kms0
 *                                            movie   the same area as a camera pan: a window
 *                                                    onto the still pic_photo(0) moving 3
 *                                                    columns right and 1 row down a frame
 *   qxltest cmos    get IDX | set IDX VAL  one CMOS RAM byte (survives a guest reboot)
 *   qxltest agent   [--secs S]             minimal Spice agent on com.redhat.spice.0 (announces
 *                                          MONITORS_CONFIG so clients send monitor configs)
 *   qxltest input   [--secs S] [--want K,..] [--led-key CODE] [--exit-key CODE] [--all] [--no-grab]
 *                                          report every /dev/input/event* device and echo its
 *                                          events; CODE (default KEY_F12) toggles Caps Lock LED
 *
 * The pictures are functions of (x, y, width, height); tests/lib/qxlpic.py computes the same ones.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <linux/input.h>
#include <linux/kd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

/* ---- DRM UAPI (include/uapi/drm/drm.h, drm_mode.h) ---- */
#define DRM_IOCTL_BASE 'd'
#define DRM_IO_(nr) _IO(DRM_IOCTL_BASE, nr)
#define DRM_IOWR_(nr, type) _IOWR(DRM_IOCTL_BASE, nr, type)

struct drm_mode_card_res {
	uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
	uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
	uint32_t min_width, max_width, min_height, max_height;
};
struct drm_mode_modeinfo {
	uint32_t clock;
	uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
	uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan;
	uint32_t vrefresh, flags, type;
	char name[32];
};
struct drm_mode_crtc {
	uint64_t set_connectors_ptr;
	uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid;
	struct drm_mode_modeinfo mode;
};
struct drm_mode_cursor {
	uint32_t flags, crtc_id;
	int32_t x, y;
	uint32_t width, height, handle;
};
struct drm_mode_get_encoder {
	uint32_t encoder_id, encoder_type, crtc_id, possible_crtcs, possible_clones;
};
struct drm_mode_get_connector {
	uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
	uint32_t count_modes, count_props, count_encoders, encoder_id, connector_id;
	uint32_t connector_type, connector_type_id, connection, mm_width, mm_height, subpixel, pad;
};
struct drm_mode_fb_cmd {
	uint32_t fb_id, width, height, pitch, bpp, depth, handle;
};
struct drm_clip_rect {
	uint16_t x1, y1, x2, y2;
};
struct drm_mode_fb_dirty_cmd {
	uint32_t fb_id, flags, color, num_clips;
	uint64_t clips_ptr;
};
struct drm_mode_create_dumb {
	uint32_t height, width, bpp, flags, handle, pitch;
	uint64_t size;
};
struct drm_mode_map_dumb {
	uint32_t handle, pad;
	uint64_t offset;
};
struct drm_mode_destroy_dumb {
	uint32_t handle;
};

_Static_assert(sizeof(struct drm_mode_card_res) == 64, "card_res");
_Static_assert(sizeof(struct drm_mode_modeinfo) == 68, "modeinfo");
_Static_assert(sizeof(struct drm_mode_crtc) == 104, "crtc");
_Static_assert(sizeof(struct drm_mode_cursor) == 28, "cursor");
_Static_assert(sizeof(struct drm_mode_get_encoder) == 20, "encoder");
_Static_assert(sizeof(struct drm_mode_get_connector) == 80, "connector");
_Static_assert(sizeof(struct drm_mode_fb_cmd) == 28, "fb_cmd");
_Static_assert(sizeof(struct drm_mode_fb_dirty_cmd) == 24, "dirty");
_Static_assert(sizeof(struct drm_mode_create_dumb) == 32, "create_dumb");
_Static_assert(sizeof(struct drm_mode_map_dumb) == 16, "map_dumb");

#define DRM_IOCTL_SET_MASTER DRM_IO_(0x1e)
#define DRM_IOCTL_MODE_GETRESOURCES DRM_IOWR_(0xA0, struct drm_mode_card_res)
#define DRM_IOCTL_MODE_GETCRTC DRM_IOWR_(0xA1, struct drm_mode_crtc)
#define DRM_IOCTL_MODE_SETCRTC DRM_IOWR_(0xA2, struct drm_mode_crtc)
#define DRM_IOCTL_MODE_CURSOR DRM_IOWR_(0xA3, struct drm_mode_cursor)
#define DRM_IOCTL_MODE_GETENCODER DRM_IOWR_(0xA6, struct drm_mode_get_encoder)
#define DRM_IOCTL_MODE_GETCONNECTOR DRM_IOWR_(0xA7, struct drm_mode_get_connector)
#define DRM_IOCTL_MODE_ADDFB DRM_IOWR_(0xAE, struct drm_mode_fb_cmd)
#define DRM_IOCTL_MODE_RMFB DRM_IOWR_(0xAF, unsigned int)
#define DRM_IOCTL_MODE_DIRTYFB DRM_IOWR_(0xB1, struct drm_mode_fb_dirty_cmd)
#define DRM_IOCTL_MODE_CREATE_DUMB DRM_IOWR_(0xB2, struct drm_mode_create_dumb)
#define DRM_IOCTL_MODE_MAP_DUMB DRM_IOWR_(0xB3, struct drm_mode_map_dumb)
#define DRM_IOCTL_MODE_DESTROY_DUMB DRM_IOWR_(0xB4, struct drm_mode_destroy_dumb)

#define DRM_MODE_CONNECTED 1
#define DRM_MODE_TYPE_PREFERRED (1 << 3)
#define DRM_MODE_CURSOR_BO 0x01
#define DRM_MODE_CURSOR_MOVE 0x02

/* ---- output ---- */
static const char *g_test = "qxltest";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	printf("QXL-TEST: %s %s\n", g_test, buf);
	fflush(stdout);
}

static int fail(const char *what)
{
	say("FAIL %s: %s", what, strerror(errno));
	return 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do {
		r = ioctl(fd, req, arg);
	} while (r == -1 && (errno == EINTR || errno == EAGAIN));
	return r;
}

/* ---- the pictures (keep in step with tests/lib/qxlpic.py) ---- */
/* "fb": r = x & 255, g = y & 255, b = 64*(x>>8) + 16*(y>>8) + ((x^y) & 15)  (mod 256) */
static uint32_t pic_fb(uint32_t x, uint32_t y)
{
	uint32_t r = x & 255, g = y & 255;
	uint32_t b = ((x >> 8) * 64 + (y >> 8) * 16 + ((x ^ y) & 15)) & 255;
	return (r << 16) | (g << 8) | b;
}
/* "kms0": r = (x + 2y) & 255, g = (3x + y) >> 2 & 255, b = 0x80 ^ (x >> 4 & 15) ^ (y & 0xf0) */
static uint32_t pic_kms0(uint32_t x, uint32_t y)
{
	uint32_t r = (x + 2 * y) & 255, g = ((3 * x + y) >> 2) & 255;
	uint32_t b = 0x80 ^ ((x >> 4) & 15) ^ (y & 0xf0);
	return (r << 16) | (g << 8) | b;
}
/* "kms1" (inside the dirty rectangles): kms0 with every channel inverted */
static uint32_t pic_kms1(uint32_t x, uint32_t y) { return pic_kms0(x, y) ^ 0xffffff; }
/* "redraw" frame f: r = (x + f) & 255, g = (y + 3f) & 255, b = (x ^ y ^ 5f) & 255 */
static uint32_t pic_redraw(uint32_t x, uint32_t y, uint32_t f)
{
	return (((x + f) & 255) << 16) | (((y + 3 * f) & 255) << 8) | ((x ^ y ^ (5 * f)) & 255);
}

/* "scroll" frame f: a page of 16-row text lines (black glyph cells on white, blank gaps)
 * moved up by f * K rows: each frame repeats the previous one shifted, plus K new rows */
static uint32_t pic_page(uint32_t x, uint32_t row)
{
	uint32_t line = row / 16, r = row % 16, cell = x / 8;
	if (r < 2 || r >= 14)
		return 0xffffff;
	uint32_t h = line * 2654435761u ^ cell * 40503u;
	h ^= h >> 13;
	h *= 0x5bd1e995u;
	h ^= h >> 15;
	if ((h & 7) == 0)
		return 0xffffff; /* a space */
	return (h >> (((r - 2) / 3) * 4 + (x & 7) / 2)) & 1 ? 0x202020 : 0xffffff;
}

/* A photo-like picture, frame f: smooth gradients and rings (triangle waves) that move at
 * different speeds per channel, plus a little per-pixel noise; hard for LZ, what QUIC and JPEG
 * are for. Integer-only so tests/lib/qxlpic.py computes the same pixels. */
static uint32_t tri(uint32_t v)
{
	v &= 511;
	return v < 256 ? v : 511 - v;
}
static uint32_t pic_photo(uint32_t x, uint32_t y, uint32_t f)
{
	uint32_t a = tri(x + (y >> 1) + 37 * f);
	uint32_t b = tri((x >> 1) + y + (y >> 1) + 11 * f);
	uint32_t c = tri(((x * x + y * y) >> 9) + 23 * f);
	uint32_t h = x * 73856093u ^ y * 19349663u ^ f * 83492791u;
	h ^= h >> 13;
	h *= 0x5bd1e995u;
	h ^= h >> 15;
	uint32_t n = h & 7;
	uint32_t r = (2 * a + c) / 3 + n, g = (b + 2 * c) / 3 + n, bl = (a + b) / 2 + (n >> 1);
	r = r > 255 ? 255 : r;
	g = g > 255 ? 255 : g;
	bl = bl > 255 ? 255 : bl;
	return (r << 16) | (g << 8) | bl;
}

/* Dirty rectangles of the kms picture, as fractions of the mode (x, y, w, h) in 1/16ths, plus a
 * small fixed 16x16 one at (5, 7). */
#define N_RECTS 3
static void kms_rects(uint32_t w, uint32_t h, struct drm_clip_rect *c)
{
	c[0] = (struct drm_clip_rect){w * 2 / 16, h * 2 / 16, w * 6 / 16, h * 6 / 16};
	c[1] = (struct drm_clip_rect){w * 8 / 16, h * 5 / 16, w * 13 / 16, h * 13 / 16};
	c[2] = (struct drm_clip_rect){5, 7, 21, 23};
}

/* Switch the text console off so fbcon stops drawing over the picture. */
static void console_graphics(void)
{
	int fd = open("/dev/tty1", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fd = open("/dev/tty0", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		ioctl(fd, KDSETMODE, KD_GRAPHICS);
		/* keep it open for the process lifetime: closing does not restore text mode anyway */
	}
}

static long opt_num(int argc, char **argv, const char *name, long dflt)
{
	for (int i = 0; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return strtol(argv[i + 1], NULL, 0);
	return dflt;
}

static void hold(long secs)
{
	if (secs > 0) {
		say("HOLD %ld", secs);
		sleep((unsigned)secs);
	}
}

/* ---- fb ---- */
static int cmd_fb(int argc, char **argv)
{
	long hold_s = opt_num(argc, argv, "--hold", 0);
	int fd = open("/dev/fb0", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open /dev/fb0");
	struct fb_var_screeninfo v;
	struct fb_fix_screeninfo f;
	if (ioctl(fd, FBIOGET_VSCREENINFO, &v) || ioctl(fd, FBIOGET_FSCREENINFO, &f))
		return fail("FBIOGET_*SCREENINFO");
	say("GEOMETRY %ux%u bpp=%u stride=%u smem_len=%u virtual=%ux%u id=%.16s", v.xres, v.yres,
	    v.bits_per_pixel, f.line_length, f.smem_len, v.xres_virtual, v.yres_virtual, f.id);
	if (v.bits_per_pixel != 32 || f.line_length < v.xres * 4) {
		say("FAIL unsupported format bpp=%u", v.bits_per_pixel);
		return 1;
	}
	size_t len = (size_t)f.line_length * v.yres;
	console_graphics();
	uint8_t *fb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fb == MAP_FAILED)
		return fail("mmap /dev/fb0");
	/* Build the picture in memory first, then copy it in one go so the driver's deferred-I/O
	 * flush sees one burst of dirty pages. */
	uint8_t *img = malloc(len);
	if (!img)
		return fail("malloc");
	for (uint32_t y = 0; y < v.yres; y++) {
		uint32_t *row = (uint32_t *)(img + (size_t)y * f.line_length);
		for (uint32_t x = 0; x < v.xres; x++)
			row[x] = pic_fb(x, y);
	}
	double t0 = now_s();
	memcpy(fb, img, len);
	msync(fb, len, MS_SYNC);
	double t1 = now_s();
	/* Give the deferred-I/O worker (HZ/20 delay) time to flush to the device. */
	usleep(500 * 1000);
	uint32_t bad = 0;
	for (uint32_t y = 0; y < v.yres; y++) {
		uint32_t *row = (uint32_t *)(fb + (size_t)y * f.line_length);
		for (uint32_t x = 0; x < v.xres; x++)
			if ((row[x] & 0xffffff) != pic_fb(x, y))
				bad++;
	}
	if (bad) {
		say("FAIL readback: %u pixels differ", bad);
		return 1;
	}
	say("DRAWN picture=fb %ux%u copy_ms=%.1f", v.xres, v.yres, (t1 - t0) * 1e3);
	say("PASS");
	hold(hold_s);
	return 0;
}

/* ---- KMS helpers ---- */
struct kms {
	int fd;
	uint32_t crtc_id, conn_id, fb_id, handle, pitch, w, h;
	uint64_t size;
	uint8_t *map;
	struct drm_mode_modeinfo mode;
};

static int open_card(int *fd)
{
	*fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return fail("open /dev/dri/card0");
	/* The first opener is master already; SET_MASTER fails harmlessly if so. */
	ioctl(*fd, DRM_IOCTL_SET_MASTER, 0);
	return 0;
}

/* Resources: up to 16 of each. */
struct res {
	uint32_t crtcs[16], conns[16], encs[16];
	uint32_t n_crtcs, n_conns, n_encs;
};

static int get_res(int fd, struct res *r)
{
	struct drm_mode_card_res cr;
	memset(&cr, 0, sizeof cr);
	if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &cr))
		return fail("GETRESOURCES");
	memset(r, 0, sizeof *r);
	r->n_crtcs = cr.count_crtcs > 16 ? 16 : cr.count_crtcs;
	r->n_conns = cr.count_connectors > 16 ? 16 : cr.count_connectors;
	r->n_encs = cr.count_encoders > 16 ? 16 : cr.count_encoders;
	memset(&cr, 0, sizeof cr);
	cr.crtc_id_ptr = (uintptr_t)r->crtcs;
	cr.connector_id_ptr = (uintptr_t)r->conns;
	cr.encoder_id_ptr = (uintptr_t)r->encs;
	cr.count_crtcs = r->n_crtcs;
	cr.count_connectors = r->n_conns;
	cr.count_encoders = r->n_encs;
	if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &cr))
		return fail("GETRESOURCES (ids)");
	return 0;
}

/* Connector info with its mode list (probe = count_modes 0 first, which re-probes as master). */
struct conn {
	struct drm_mode_get_connector c;
	struct drm_mode_modeinfo modes[64];
	uint32_t encs[8];
	uint32_t n_modes;
};

static int get_conn(int fd, uint32_t id, struct conn *out)
{
	for (int tries = 0; tries < 4; tries++) {
		struct drm_mode_get_connector c;
		memset(&c, 0, sizeof c);
		c.connector_id = id;
		if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &c))
			return fail("GETCONNECTOR");
		uint32_t want = c.count_modes > 64 ? 64 : c.count_modes;
		uint32_t nenc = c.count_encoders > 8 ? 8 : c.count_encoders;
		memset(out, 0, sizeof *out);
		out->c.connector_id = id;
		out->c.count_modes = want;
		out->c.modes_ptr = (uintptr_t)out->modes;
		out->c.count_encoders = nenc;
		out->c.encoders_ptr = (uintptr_t)out->encs;
		if (want == 0) {
			/* count_modes 0 would re-probe; ask once more with a dummy buffer */
			out->c.count_modes = 0;
		}
		if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &out->c))
			return fail("GETCONNECTOR (modes)");
		if (out->c.count_modes <= want || want == 64) {
			out->n_modes = out->c.count_modes < want ? out->c.count_modes : want;
			return 0;
		}
		/* the list grew between the two calls: try again */
	}
	errno = EAGAIN;
	return fail("GETCONNECTOR (unstable mode list)");
}

static const struct drm_mode_modeinfo *preferred(const struct conn *c)
{
	for (uint32_t i = 0; i < c->n_modes; i++)
		if (c->modes[i].type & DRM_MODE_TYPE_PREFERRED)
			return &c->modes[i];
	return c->n_modes ? &c->modes[0] : NULL;
}

/* Pick the first connected connector, its preferred mode and a CRTC; create a dumb buffer of the
 * mode's size, map it and add a framebuffer. */
static int kms_setup(struct kms *k)
{
	memset(k, 0, sizeof *k);
	if (open_card(&k->fd))
		return 1;
	struct res r;
	if (get_res(k->fd, &r))
		return 1;
	struct conn c;
	int found = 0;
	for (uint32_t i = 0; i < r.n_conns && !found; i++) {
		if (get_conn(k->fd, r.conns[i], &c))
			return 1;
		if (c.c.connection == DRM_MODE_CONNECTED && c.n_modes > 0)
			found = 1;
	}
	if (!found) {
		say("FAIL no connected connector with modes");
		return 1;
	}
	k->conn_id = c.c.connector_id;
	k->mode = *preferred(&c);
	k->crtc_id = r.n_crtcs ? r.crtcs[0] : 0;
	if (c.c.encoder_id) {
		struct drm_mode_get_encoder e = {.encoder_id = c.c.encoder_id};
		if (!xioctl(k->fd, DRM_IOCTL_MODE_GETENCODER, &e) && e.crtc_id)
			k->crtc_id = e.crtc_id;
	}
	k->w = k->mode.hdisplay;
	k->h = k->mode.vdisplay;
	struct drm_mode_create_dumb cd = {.height = k->h, .width = k->w, .bpp = 32};
	if (xioctl(k->fd, DRM_IOCTL_MODE_CREATE_DUMB, &cd))
		return fail("CREATE_DUMB");
	k->handle = cd.handle;
	k->pitch = cd.pitch;
	k->size = cd.size;
	struct drm_mode_fb_cmd fb = {.width = k->w, .height = k->h, .pitch = k->pitch, .bpp = 32,
				     .depth = 24, .handle = k->handle};
	if (xioctl(k->fd, DRM_IOCTL_MODE_ADDFB, &fb))
		return fail("ADDFB");
	k->fb_id = fb.fb_id;
	struct drm_mode_map_dumb md = {.handle = k->handle};
	if (xioctl(k->fd, DRM_IOCTL_MODE_MAP_DUMB, &md))
		return fail("MAP_DUMB");
	k->map = mmap(NULL, k->size, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd, (off_t)md.offset);
	if (k->map == MAP_FAILED)
		return fail("mmap dumb");
	say("MODE connector=%u crtc=%u %ux%u@%u pitch=%u fb=%u", k->conn_id, k->crtc_id, k->w, k->h,
	    k->mode.vrefresh, k->pitch, k->fb_id);
	return 0;
}

static int kms_setcrtc(struct kms *k)
{
	struct drm_mode_crtc cr;
	memset(&cr, 0, sizeof cr);
	cr.crtc_id = k->crtc_id;
	cr.fb_id = k->fb_id;
	cr.set_connectors_ptr = (uintptr_t)&k->conn_id;
	cr.count_connectors = 1;
	cr.mode = k->mode;
	cr.mode_valid = 1;
	if (xioctl(k->fd, DRM_IOCTL_MODE_SETCRTC, &cr))
		return fail("SETCRTC");
	return 0;
}

static int kms_dirty(struct kms *k, struct drm_clip_rect *clips, uint32_t n)
{
	struct drm_mode_fb_dirty_cmd d = {.fb_id = k->fb_id, .num_clips = n,
					  .clips_ptr = (uintptr_t)clips};
	if (xioctl(k->fd, DRM_IOCTL_MODE_DIRTYFB, &d)) {
		/* ENOSYS means the driver has no dirty hook: the scanout is live anyway */
		if (errno == ENOSYS)
			return 0;
		return fail("DIRTYFB");
	}
	return 0;
}

static void fill(struct kms *k, uint32_t (*f)(uint32_t, uint32_t), uint32_t x1, uint32_t y1,
		 uint32_t x2, uint32_t y2)
{
	for (uint32_t y = y1; y < y2; y++) {
		uint32_t *row = (uint32_t *)(k->map + (size_t)y * k->pitch);
		for (uint32_t x = x1; x < x2; x++)
			row[x] = f(x, y);
	}
}

static int cmd_kms(int argc, char **argv)
{
	long hold_s = opt_num(argc, argv, "--hold", 0);
	struct kms k;
	console_graphics();
	if (kms_setup(&k))
		return 1;
	fill(&k, pic_kms0, 0, 0, k.w, k.h);
	if (kms_setcrtc(&k))
		return 1;
	struct drm_clip_rect full = {0, 0, (uint16_t)k.w, (uint16_t)k.h};
	if (kms_dirty(&k, &full, 1))
		return 1;
	say("SHOWN picture=kms0 %ux%u", k.w, k.h);
	usleep(300 * 1000);
	struct drm_clip_rect c[N_RECTS];
	kms_rects(k.w, k.h, c);
	for (int i = 0; i < N_RECTS; i++)
		fill(&k, pic_kms1, c[i].x1, c[i].y1, c[i].x2, c[i].y2);
	if (kms_dirty(&k, c, N_RECTS))
		return 1;
	for (int i = 0; i < N_RECTS; i++)
		say("DIRTY %u,%u-%u,%u", c[i].x1, c[i].y1, c[i].x2, c[i].y2);
	usleep(300 * 1000);
	say("DRAWN picture=kms %ux%u", k.w, k.h);
	say("PASS");
	hold(hold_s);
	return 0;
}

/* "cursor": 64x64 ARGB; opaque where x + y < 48 (a triangle pointing up-left), else transparent.
 * Opaque pixels: a = 255, r = 4x, g = 4y, b = 0x40. Hotspot (0,0). */
static uint32_t pic_cursor(uint32_t x, uint32_t y)
{
	if (x + y >= 48)
		return 0;
	return 0xff000000u | ((4 * x) << 16) | ((4 * y) << 8) | 0x40;
}

static int cmd_cursor(int argc, char **argv)
{
	long hold_s = opt_num(argc, argv, "--hold", 0);
	long wait_ms = opt_num(argc, argv, "--wait-ms", 2000);
	if (wait_ms < 0 || wait_ms > 600000)
		wait_ms = 2000;
	struct kms k;
	console_graphics();
	if (kms_setup(&k))
		return 1;
	fill(&k, pic_kms0, 0, 0, k.w, k.h);
	if (kms_setcrtc(&k))
		return 1;
	struct drm_clip_rect full = {0, 0, (uint16_t)k.w, (uint16_t)k.h};
	if (kms_dirty(&k, &full, 1))
		return 1;
	/* Give a client that connects on "SHOWN" time to be there for the SET and every MOVE. */
	say("SHOWN picture=kms0 %ux%u (cursor in %ld ms)", k.w, k.h, wait_ms);
	usleep((useconds_t)wait_ms * 1000);
	struct drm_mode_create_dumb cd = {.height = 64, .width = 64, .bpp = 32};
	if (xioctl(k.fd, DRM_IOCTL_MODE_CREATE_DUMB, &cd))
		return fail("CREATE_DUMB cursor");
	struct drm_mode_map_dumb md = {.handle = cd.handle};
	if (xioctl(k.fd, DRM_IOCTL_MODE_MAP_DUMB, &md))
		return fail("MAP_DUMB cursor");
	uint8_t *m = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, k.fd, (off_t)md.offset);
	if (m == MAP_FAILED)
		return fail("mmap cursor");
	for (uint32_t y = 0; y < 64; y++)
		for (uint32_t x = 0; x < 64; x++)
			((uint32_t *)(m + (size_t)y * cd.pitch))[x] = pic_cursor(x, y);
	struct drm_mode_cursor cur = {.flags = DRM_MODE_CURSOR_BO, .crtc_id = k.crtc_id,
				      .width = 64, .height = 64, .handle = cd.handle};
	if (xioctl(k.fd, DRM_IOCTL_MODE_CURSOR, &cur))
		return fail("MODE_CURSOR (set)");
	say("SET 64x64 picture=cursor");
	static const int32_t pos[][2] = {{100, 100}, {200, 150}, {300, 200}};
	for (unsigned i = 0; i < sizeof pos / sizeof pos[0]; i++) {
		usleep(300 * 1000);
		struct drm_mode_cursor mv = {.flags = DRM_MODE_CURSOR_MOVE, .crtc_id = k.crtc_id,
					     .x = pos[i][0], .y = pos[i][1]};
		if (xioctl(k.fd, DRM_IOCTL_MODE_CURSOR, &mv))
			return fail("MODE_CURSOR (move)");
		say("MOVED %d %d", pos[i][0], pos[i][1]);
	}
	say("DRAWN picture=kms0 %ux%u cursor at 300,200", k.w, k.h);
	say("PASS");
	hold(hold_s);
	return 0;
}

/* ---- modes ---- */
static int cmd_modes(int argc, char **argv)
{
	long watch_s = opt_num(argc, argv, "--watch", 0);
	int fd;
	if (open_card(&fd))
		return 1;
	struct res r;
	if (get_res(fd, &r))
		return 1;
	say("RESOURCES crtcs=%u connectors=%u encoders=%u", r.n_crtcs, r.n_conns, r.n_encs);
	uint32_t watch_id = 0;
	static struct conn c;
	for (uint32_t i = 0; i < r.n_conns; i++) {
		if (get_conn(fd, r.conns[i], &c))
			return 1;
		const struct drm_mode_modeinfo *p = preferred(&c);
		say("CONNECTOR id=%u status=%s modes=%u preferred=%ux%u", c.c.connector_id,
		    c.c.connection == DRM_MODE_CONNECTED ? "connected" : "disconnected", c.n_modes,
		    p ? p->hdisplay : 0, p ? p->vdisplay : 0);
		for (uint32_t j = 0; j < c.n_modes; j++)
			say("MODE connector=%u %ux%u@%u%s", c.c.connector_id, c.modes[j].hdisplay,
			    c.modes[j].vdisplay, c.modes[j].vrefresh,
			    (c.modes[j].type & DRM_MODE_TYPE_PREFERRED) ? " preferred" : "");
		if (!watch_id && c.c.connection == DRM_MODE_CONNECTED)
			watch_id = c.c.connector_id;
	}
	if (!watch_id && r.n_conns)
		watch_id = r.conns[0];
	if (watch_s <= 0) {
		say("PASS");
		return 0;
	}
	if (get_conn(fd, watch_id, &c))
		return 1;
	const struct drm_mode_modeinfo *p = preferred(&c);
	uint32_t pw = p ? p->hdisplay : 0, ph = p ? p->vdisplay : 0;
	say("WATCH connector=%u preferred=%ux%u for %lds", watch_id, pw, ph, watch_s);
	double end = now_s() + (double)watch_s;
	unsigned changes = 0;
	while (now_s() < end) {
		usleep(200 * 1000);
		if (get_conn(fd, watch_id, &c))
			return 1;
		p = preferred(&c);
		uint32_t nw = p ? p->hdisplay : 0, nh = p ? p->vdisplay : 0;
		if (nw != pw || nh != ph) {
			changes++;
			say("PREFERRED-CHANGED connector=%u %ux%u (was %ux%u) modes=%u", watch_id, nw, nh,
			    pw, ph, c.n_modes);
			pw = nw;
			ph = nh;
		}
	}
	say("PASS changes=%u preferred=%ux%u", changes, pw, ph);
	return 0;
}

/* ---- redraw loop (benchmark) ---- */
static int cmd_redraw(int argc, char **argv)
{
	long frames = opt_num(argc, argv, "--frames", 100);
	long interval_ms = opt_num(argc, argv, "--interval-ms", 0);
	long hold_s = opt_num(argc, argv, "--hold", 0);
	long wait_ms = opt_num(argc, argv, "--wait-ms", 3000);
	long scroll = opt_num(argc, argv, "--scroll", 0); /* K: pic_page moving K rows */
	const char *workload = scroll ? "scroll" : "redraw";
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--workload"))
			workload = argv[i + 1];
	enum { W_REDRAW, W_SCROLL, W_TEXT, W_PHOTO, W_VIDEO, W_MOVIE } wl;
	if (!strcmp(workload, "redraw"))
		wl = W_REDRAW;
	else if (!strcmp(workload, "scroll"))
		wl = W_SCROLL;
	else if (!strcmp(workload, "text"))
		wl = W_TEXT;
	else if (!strcmp(workload, "photo"))
		wl = W_PHOTO;
	else if (!strcmp(workload, "video"))
		wl = W_VIDEO;
	else if (!strcmp(workload, "movie"))
		wl = W_MOVIE;
	else {
		say("FAIL bad --workload %s", workload);
		return 1;
	}
	if (scroll < 0 || scroll > 4096)
		scroll = 0;
	if (wl == W_SCROLL && scroll == 0)
		scroll = 16;
	if (wait_ms < 0 || wait_ms > 600000)
		wait_ms = 3000;
	if (frames < 1 || frames > 1000000) {
		say("FAIL bad --frames");
		return 1;
	}
	struct kms k;
	console_graphics();
	if (kms_setup(&k))
		return 1;
	fill(&k, pic_kms0, 0, 0, k.w, k.h);
	if (kms_setcrtc(&k))
		return 1;
	struct drm_clip_rect full = {0, 0, (uint16_t)k.w, (uint16_t)k.h};
	if (kms_dirty(&k, &full, 1))
		return 1;
	/* the video area: 480x270 (at most the screen), centred */
	uint32_t vw = k.w < 480 ? k.w : 480, vh = k.h < 270 ? k.h : 270;
	struct drm_clip_rect video = {(uint16_t)((k.w - vw) / 2), (uint16_t)((k.h - vh) / 2),
				      (uint16_t)((k.w - vw) / 2 + vw), (uint16_t)((k.h - vh) / 2 + vh)};
	uint32_t lines = k.h / 16; /* text: lines on a page */
	/* A client counting frames connects on SHOWN; give it time before the loop starts. */
	say("SHOWN picture=kms0 %ux%u (loop in %ld ms)", k.w, k.h, wait_ms);
	usleep((useconds_t)wait_ms * 1000);
	say("START frames=%ld %ux%u scroll=%ld workload=%s", frames, k.w, k.h, scroll, workload);
	double t0 = now_s(), worst = 0;
	for (long f = 0; f < frames; f++) {
		double ts = now_s();
		struct drm_clip_rect clip = full;
		uint32_t fu = (uint32_t)f;
		if (wl == W_TEXT) {
			uint32_t slot = lines ? fu % lines : 0;
			if (slot == 0) /* a new page: white, the whole screen flushed */
				for (uint32_t y = 0; y < k.h; y++)
					memset(k.map + (size_t)y * k.pitch, 0xff, (size_t)k.w * 4);
			for (uint32_t r = 0; r < 16 && slot * 16 + r < k.h; r++) {
				uint32_t *row = (uint32_t *)(k.map + (size_t)(slot * 16 + r) * k.pitch);
				for (uint32_t x = 0; x < k.w; x++)
					row[x] = pic_page(x, fu * 16 + r);
			}
			if (slot != 0)
				clip = (struct drm_clip_rect){0, (uint16_t)(slot * 16), (uint16_t)k.w,
							      (uint16_t)(slot * 16 + 16)};
		} else if (wl == W_VIDEO || wl == W_MOVIE) {
			/* video: fresh grain every frame; movie: the picture (grain included) pans */
			uint32_t px = wl == W_MOVIE ? 3 * fu : 0, py = wl == W_MOVIE ? fu : 0;
			uint32_t pf = wl == W_MOVIE ? 0 : fu;
			for (uint32_t y = video.y1; y < video.y2; y++) {
				uint32_t *row = (uint32_t *)(k.map + (size_t)y * k.pitch);
				for (uint32_t x = video.x1; x < video.x2; x++)
					row[x] = pic_photo(x - video.x1 + px, y - video.y1 + py, pf);
			}
			clip = video;
		} else {
			for (uint32_t y = 0; y < k.h; y++) {
				uint32_t *row = (uint32_t *)(k.map + (size_t)y * k.pitch);
				if (wl == W_SCROLL)
					for (uint32_t x = 0; x < k.w; x++)
						row[x] = pic_page(x, y + (uint32_t)(f * scroll));
				else if (wl == W_PHOTO)
					for (uint32_t x = 0; x < k.w; x++)
						row[x] = pic_photo(x, y, fu);
				else
					for (uint32_t x = 0; x < k.w; x++)
						row[x] = pic_redraw(x, y, fu);
			}
		}
		if (kms_dirty(&k, &clip, 1))
			return 1;
		double dt = now_s() - ts;
		if (dt > worst)
			worst = dt;
		if (interval_ms > 0)
			usleep((useconds_t)interval_ms * 1000);
	}
	double total = now_s() - t0;
	say("DONE frames=%ld secs=%.3f fps=%.2f worst_ms=%.1f", frames, total, (double)frames / total,
	    worst * 1e3);
	say("PASS");
	hold(hold_s);
	return 0;
}

/* ---- CMOS byte (reboot counter) ---- */
static int cmd_cmos(int argc, char **argv)
{
	if (argc < 3)
		goto usage;
	long idx = strtol(argv[2], NULL, 0);
	if (idx < 0x0e || idx > 0x7f)
		goto usage;
	if (ioperm(0x70, 2, 1))
		return fail("ioperm");
	if (!strcmp(argv[1], "get")) {
		outb((unsigned char)idx, 0x70);
		printf("%u\n", inb(0x71));
		return 0;
	}
	if (!strcmp(argv[1], "set") && argc >= 4) {
		outb((unsigned char)idx, 0x70);
		outb((unsigned char)strtol(argv[3], NULL, 0), 0x71);
		return 0;
	}
usage:
	fprintf(stderr, "usage: qxltest cmos get IDX | set IDX VAL  (IDX 0x0e..0x7f)\n");
	return 2;
}

/* ---- minimal Spice agent (monitors-config tests) ----
 * Opens the virtio port named com.redhat.spice.0 so that the server sees an agent, announces the
 * MONITORS_CONFIG capability, answers capability requests and logs what arrives. Wire format
 * (spice-protocol vd_agent.h): chunk header {port u32, size u32}, then a message header
 * {protocol u32 = 1, type u32, opaque u64, size u32} and the data; all little-endian. */
#define VDP_CLIENT_PORT 1
#define VD_AGENT_MONITORS_CONFIG 2
#define VD_AGENT_ANNOUNCE_CAPABILITIES 6
#define VD_AGENT_CAP_MONITORS_CONFIG 1

static int agent_send(int fd, uint32_t type, const void *data, uint32_t len)
{
	uint8_t buf[8 + 20 + 64];
	if (len > 64)
		return -1;
	uint32_t ch[2] = {VDP_CLIENT_PORT, 20 + len};
	uint32_t hdr[5] = {1, type, 0, 0, len}; /* opaque (u64) = words 2..3 */
	memcpy(buf, ch, 8);
	memcpy(buf + 8, hdr, 20);
	memcpy(buf + 28, data, len);
	size_t n = 28 + len, off = 0;
	while (off < n) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

static int agent_caps(int fd, uint32_t request)
{
	uint32_t caps[2] = {request, 1u << VD_AGENT_CAP_MONITORS_CONFIG};
	return agent_send(fd, VD_AGENT_ANNOUNCE_CAPABILITIES, caps, sizeof caps);
}

static int find_agent_port(char *dev, size_t devlen)
{
	for (int a = 0; a < 4; a++)
		for (int p = 0; p < 32; p++) {
			char path[96], name[64] = {0};
			snprintf(path, sizeof path, "/sys/class/virtio-ports/vport%dp%d/name", a, p);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			ssize_t r = read(fd, name, sizeof name - 1);
			close(fd);
			if (r > 0 && !strncmp(name, "com.redhat.spice.0", 18)) {
				snprintf(dev, devlen, "/dev/vport%dp%d", a, p);
				return 0;
			}
		}
	return -1;
}

static int cmd_agent(int argc, char **argv)
{
	long secs = opt_num(argc, argv, "--secs", 30);
	char dev[64];
	double end = now_s() + (double)secs;
	while (find_agent_port(dev, sizeof dev)) {
		if (now_s() > end) {
			say("FAIL no com.redhat.spice.0 virtio port");
			return 1;
		}
		usleep(100 * 1000);
	}
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open agent port");
	say("OPEN %s", dev);
	int announced = 0;
	/* Per-port reassembly is not needed for the small messages logged here: a message that
	 * spans chunks is skipped chunk by chunk. */
	uint8_t buf[4096];
	size_t have = 0;
	while (now_s() < end) {
		if (!announced) {
			/* write() blocks until the host side is open; the server attaches the agent then */
			if (agent_caps(fd, 1) == 0) {
				announced = 1;
				say("ANNOUNCED caps=MONITORS_CONFIG");
			}
		}
		ssize_t r = read(fd, buf + have, sizeof buf - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			usleep(20 * 1000); /* host not connected yet: EOF */
			continue;
		}
		have += (size_t)r;
		while (have >= 8) {
			uint32_t port, size;
			memcpy(&port, buf, 4);
			memcpy(&size, buf + 4, 4);
			if (size > 2048) {
				say("FAIL bad chunk size %u", size);
				return 1;
			}
			if (have < 8 + (size_t)size)
				break;
			if (size >= 20) {
				uint32_t proto, type, msize;
				memcpy(&proto, buf + 8, 4);
				memcpy(&type, buf + 12, 4);
				memcpy(&msize, buf + 24, 4);
				say("MSG port=%u type=%u size=%u", port, type, msize);
				if (proto == 1 && type == VD_AGENT_ANNOUNCE_CAPABILITIES && size >= 24) {
					uint32_t request;
					memcpy(&request, buf + 28, 4);
					if (request)
						agent_caps(fd, 0);
				}
				if (proto == 1 && type == VD_AGENT_MONITORS_CONFIG && size >= 28 + 20) {
					uint32_t n, h, w;
					memcpy(&n, buf + 28, 4);
					memcpy(&h, buf + 36, 4);
					memcpy(&w, buf + 40, 4);
					say("MONITORS_CONFIG forwarded to the agent: n=%u first=%ux%u", n, w, h);
				}
			}
			memmove(buf, buf + 8 + size, have - 8 - size);
			have -= 8 + (size_t)size;
		}
	}
	say("PASS");
	return 0;
}

/* ---- input: evdev devices and their events (the keyboard/mouse tests) ----
 * Written from the Linux UAPI (include/uapi/linux/input.h, input-event-codes.h). Lines:
 *   QXL-TEST: input SCREEN WxH                       (fb0's size, when there is one)
 *   QXL-TEST: input DEVICE eventN name="..." bus=0x.. vendor=0x.. product=0x.. version=0x..
 *             kind=keyboard|tablet|mouse|other abs_x=MIN..MAX|none abs_y=MIN..MAX|none
 *             rel=x,y,wheel,hwheel|none led=caps,num,scroll|none grab=yes|no
 *   QXL-TEST: input READY devices=N [missing=KIND,..]  (every --want kind is there, or 30 s)
 *   QXL-TEST: input EV eventN TYPE CODE VALUE SEC.USEC (decimal; CLOCK_MONOTONIC of the event)
 *   QXL-TEST: input LED caps=0|1 devices=eventN,..|none  (the keyboard that sent the LED key)
 *   QXL-TEST: input GONE eventN
 *   QXL-TEST: input DONE events=N leds=N
 * EV_SYN/SYN_REPORT, EV_MSC/MSC_SCAN and EV_REP (the echo of EVIOCSREP below) lines are left
 * out unless --all (SYN_DROPPED is kept; so is the EV_LED echo of the program's own LED write).
 * The devices are grabbed (EVIOCGRAB) so that the console's keyboard handler sees nothing: the
 * events, and the Caps Lock LED, are this program's alone. Autorepeat is pushed to 10 s
 * (EVIOCSREP) so that a key held across a slow (TCG) moment does not repeat. */
#define MAX_INDEV 32
#define BITS_LONG (8 * sizeof(unsigned long))
#define NLONGS(n) (((n) + BITS_LONG - 1) / BITS_LONG)

struct indev {
	int fd, num, leds; /* leds: has LED_CAPSL */
	char kind[12];
};

static int test_bit(const unsigned long *b, unsigned n) { return (b[n / BITS_LONG] >> (n % BITS_LONG)) & 1; }

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, len - 1);
	close(fd);
	if (r < 0)
		return -1;
	buf[r] = 0;
	while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == ' '))
		buf[--r] = 0;
	return 0;
}

/* /dev/input/eventN from /sys/class/input/eventN/dev ("MAJ:MIN") when devtmpfs has not made it */
static int open_event(int n)
{
	char path[64], sys[64], dev[32];
	snprintf(path, sizeof path, "/dev/input/event%d", n);
	if (access(path, F_OK)) {
		unsigned ma, mi;
		snprintf(sys, sizeof sys, "/sys/class/input/event%d/dev", n);
		if (read_small(sys, dev, sizeof dev) || sscanf(dev, "%u:%u", &ma, &mi) != 2)
			return -1;
		mkdir("/dev/input", 0755);
		if (mknod(path, S_IFCHR | 0600, makedev(ma, mi)) && errno != EEXIST)
			return -1;
	}
	return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
}

static void describe(struct indev *d, int grab)
{
	char name[128] = "?";
	struct input_id id = {0};
	unsigned long ev[NLONGS(EV_CNT)] = {0}, key[NLONGS(KEY_CNT)] = {0}, rel[NLONGS(REL_CNT)] = {0};
	unsigned long absb[NLONGS(ABS_CNT)] = {0}, led[NLONGS(LED_CNT)] = {0};
	char absx[40] = "none", absy[40] = "none", rels[40] = "", leds[40] = "";
	ioctl(d->fd, EVIOCGNAME(sizeof name - 1), name);
	for (char *p = name; *p; p++)
		if (*p == '"' || *p < ' ')
			*p = '\'';
	ioctl(d->fd, EVIOCGID, &id);
	ioctl(d->fd, EVIOCGBIT(0, sizeof ev), ev);
	if (test_bit(ev, EV_KEY))
		ioctl(d->fd, EVIOCGBIT(EV_KEY, sizeof key), key);
	if (test_bit(ev, EV_REL))
		ioctl(d->fd, EVIOCGBIT(EV_REL, sizeof rel), rel);
	if (test_bit(ev, EV_ABS))
		ioctl(d->fd, EVIOCGBIT(EV_ABS, sizeof absb), absb);
	if (test_bit(ev, EV_LED))
		ioctl(d->fd, EVIOCGBIT(EV_LED, sizeof led), led);
	struct input_absinfo ai;
	if (test_bit(absb, ABS_X) && !ioctl(d->fd, EVIOCGABS(ABS_X), &ai))
		snprintf(absx, sizeof absx, "%d..%d", ai.minimum, ai.maximum);
	if (test_bit(absb, ABS_Y) && !ioctl(d->fd, EVIOCGABS(ABS_Y), &ai))
		snprintf(absy, sizeof absy, "%d..%d", ai.minimum, ai.maximum);
	static const struct { unsigned code; const char *n; } rn[] = {
		{REL_X, "x"}, {REL_Y, "y"}, {REL_WHEEL, "wheel"}, {REL_HWHEEL, "hwheel"}};
	for (unsigned i = 0; i < sizeof rn / sizeof rn[0]; i++)
		if (test_bit(rel, rn[i].code))
			snprintf(rels + strlen(rels), sizeof rels - strlen(rels), "%s%s", *rels ? "," : "", rn[i].n);
	static const struct { unsigned code; const char *n; } ln[] = {
		{LED_CAPSL, "caps"}, {LED_NUML, "num"}, {LED_SCROLLL, "scroll"}};
	for (unsigned i = 0; i < sizeof ln / sizeof ln[0]; i++)
		if (test_bit(led, ln[i].code))
			snprintf(leds + strlen(leds), sizeof leds - strlen(leds), "%s%s", *leds ? "," : "", ln[i].n);
	d->leds = test_bit(led, LED_CAPSL);
	if (test_bit(ev, EV_ABS) && test_bit(absb, ABS_X))
		strcpy(d->kind, "tablet");
	else if (test_bit(ev, EV_REL) && test_bit(rel, REL_X))
		strcpy(d->kind, "mouse");
	else if (test_bit(ev, EV_KEY) && test_bit(key, KEY_A) && test_bit(key, KEY_ENTER))
		strcpy(d->kind, "keyboard");
	else
		strcpy(d->kind, "other");
	int clk = CLOCK_MONOTONIC;
	ioctl(d->fd, EVIOCSCLOCKID, &clk);
	if (test_bit(ev, EV_REP)) {
		unsigned rep[2] = {10000, 1000}; /* REP_DELAY, REP_PERIOD in ms */
		ioctl(d->fd, EVIOCSREP, rep);
	}
	int grabbed = grab && ioctl(d->fd, EVIOCGRAB, 1) == 0;
	say("DEVICE event%d name=\"%s\" bus=0x%04x vendor=0x%04x product=0x%04x version=0x%04x kind=%s "
	    "abs_x=%s abs_y=%s rel=%s led=%s grab=%s",
	    d->num, name, id.bustype, id.vendor, id.product, id.version, d->kind, absx, absy,
	    *rels ? rels : "none", *leds ? leds : "none", grabbed ? "yes" : "no");
}

static int write_ev(int fd, unsigned type, unsigned code, int value)
{
	struct input_event e;
	memset(&e, 0, sizeof e);
	e.type = (unsigned short)type;
	e.code = (unsigned short)code;
	e.value = value;
	return write(fd, &e, sizeof e) == (ssize_t)sizeof e ? 0 : -1;
}

static int cmd_input(int argc, char **argv)
{
	long secs = opt_num(argc, argv, "--secs", 600);
	long led_key = opt_num(argc, argv, "--led-key", KEY_F12);
	/* --exit-key: stop after that key's release (the init's reboot step), 0 = never */
	long exit_key = opt_num(argc, argv, "--exit-key", 0);
	int all = 0, grab = 1, leave = 0;
	const char *want = "keyboard";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--all"))
			all = 1;
		else if (!strcmp(argv[i], "--no-grab"))
			grab = 0;
		else if (!strcmp(argv[i], "--want") && i + 1 < argc)
			want = argv[++i];
	}
	char geom[32];
	if (!read_small("/sys/class/graphics/fb0/virtual_size", geom, sizeof geom)) {
		char *c = strchr(geom, ',');
		if (c)
			*c = 'x';
		say("SCREEN %s", geom);
	}
	static struct indev dev[MAX_INDEV];
	int ndev = 0, ready = 0, caps = 0;
	unsigned long nev = 0, nled = 0;
	double start = now_s(), end = start + (double)secs, next_scan = 0;
	while (now_s() < end && !leave) {
		if (now_s() >= next_scan) {
			next_scan = now_s() + 0.25;
			DIR *dir = opendir("/sys/class/input");
			struct dirent *de;
			while (dir && (de = readdir(dir))) {
				int n, known = 0;
				if (sscanf(de->d_name, "event%d", &n) != 1)
					continue;
				for (int i = 0; i < ndev; i++)
					known |= dev[i].num == n;
				if (known || ndev >= MAX_INDEV)
					continue;
				int fd = open_event(n);
				if (fd < 0)
					continue; /* not ready yet: next scan */
				dev[ndev] = (struct indev){.fd = fd, .num = n};
				describe(&dev[ndev], grab);
				ndev++;
			}
			if (dir)
				closedir(dir);
			if (!ready) {
				/* every wanted kind present? */
				char missing[96] = "", w[96];
				snprintf(w, sizeof w, "%s", want);
				for (char *save = NULL, *k = strtok_r(w, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
					int have = 0;
					for (int i = 0; i < ndev; i++)
						have |= !strcmp(dev[i].kind, k);
					if (!have)
						snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
							 *missing ? "," : "", k);
				}
				if (!*missing) {
					say("READY devices=%d", ndev);
					ready = 1;
				} else if (now_s() - start > 30) {
					say("READY devices=%d missing=%s", ndev, missing);
					ready = 1;
				}
			}
		}
		struct pollfd pf[MAX_INDEV];
		for (int i = 0; i < ndev; i++)
			pf[i] = (struct pollfd){.fd = dev[i].fd, .events = POLLIN};
		int r = poll(pf, (nfds_t)ndev, 250);
		if (r < 0 && errno != EINTR)
			return fail("poll");
		for (int i = 0; r > 0 && i < ndev; i++) {
			if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			struct input_event ev[64];
			ssize_t got = read(dev[i].fd, ev, sizeof ev);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got <= 0) { /* ENODEV: unplugged */
				say("GONE event%d", dev[i].num);
				close(dev[i].fd);
				dev[i] = dev[--ndev];
				i--;
				continue;
			}
			int toggle = 0; /* the LED key came from this device */
			for (size_t k = 0; k < (size_t)got / sizeof ev[0]; k++) {
				struct input_event *e = &ev[k];
				if (!all && ((e->type == EV_SYN && e->code == SYN_REPORT) ||
					     (e->type == EV_MSC && e->code == MSC_SCAN) || e->type == EV_REP))
					continue;
				nev++;
				printf("QXL-TEST: input EV event%d %u %u %d %ld.%06ld\n", dev[i].num, e->type,
				       e->code, e->value, (long)e->input_event_sec, (long)e->input_event_usec);
				if (e->type == EV_KEY && e->code == led_key && e->value == 1)
					toggle = 1;
				if (exit_key && e->type == EV_KEY && e->code == exit_key && e->value == 0)
					leave = 1;
			}
			fflush(stdout);
			if (toggle) {
				/* What a console does for Caps Lock: an EV_LED event written to the keyboard
				 * (its driver turns it into the keyboard's LED command, virtio_input into a
				 * status queue event). Only the keyboard the key came from, so that the test
				 * proves that device's LED path; every keyboard with a Caps Lock LED when that
				 * one has none. */
				caps ^= 1;
				nled++;
				char list[160] = "";
				for (int j = 0; j < ndev; j++) {
					if (!dev[j].leds || (dev[i].leds && j != i))
						continue;
					if (write_ev(dev[j].fd, EV_LED, LED_CAPSL, caps) || write_ev(dev[j].fd, EV_SYN, SYN_REPORT, 0))
						say("LED-WRITE-FAILED event%d: %s", dev[j].num, strerror(errno));
					snprintf(list + strlen(list), sizeof list - strlen(list), "%sevent%d",
						 *list ? "," : "", dev[j].num);
				}
				say("LED caps=%d devices=%s", caps, *list ? list : "none");
			}
		}
	}
	say("DONE events=%lu leds=%lu", nev, nled);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: qxltest fb|kms|cursor|modes|redraw|cmos|agent|input [options]\n");
		return 2;
	}
	const char *cmd = argv[1];
	g_test = cmd;
	if (!strcmp(cmd, "fb"))
		return cmd_fb(argc - 1, argv + 1);
	if (!strcmp(cmd, "kms"))
		return cmd_kms(argc - 1, argv + 1);
	if (!strcmp(cmd, "cursor"))
		return cmd_cursor(argc - 1, argv + 1);
	if (!strcmp(cmd, "modes"))
		return cmd_modes(argc - 1, argv + 1);
	if (!strcmp(cmd, "redraw"))
		return cmd_redraw(argc - 1, argv + 1);
	if (!strcmp(cmd, "cmos"))
		return cmd_cmos(argc - 1, argv + 1);
	if (!strcmp(cmd, "agent"))
		return cmd_agent(argc - 1, argv + 1);
	if (!strcmp(cmd, "input"))
		return cmd_input(argc - 1, argv + 1);
	fprintf(stderr, "qxltest: unknown command %s\n", cmd);
	return 2;
}
