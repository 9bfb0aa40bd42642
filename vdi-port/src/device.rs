//! The device-model trait shared by the in-process API and the vhost-user layer.

use virtio_queue::Queue;
use vm_memory::GuestMemory;
use vmm_sys_util::eventfd::EventFd;

/// Feature bit 32: the device follows virtio 1.x (little-endian rings and config).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit 29: used/avail event index notification suppression.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// Feature bit 28: indirect descriptor tables.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;

/// What can go wrong while a device processes a queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The queue index is not one of the device's queues.
    #[error("queue index {0} out of range")]
    BadQueueIndex(usize),
    /// The driver broke the ring (for example an avail index more than the queue size ahead);
    /// the queue is parked until the device is reset.
    #[error("queue {index} is broken: {source}")]
    QueueBroken {
        /// Queue index.
        index: usize,
        /// What virtio-queue reported.
        source: virtio_queue::Error,
    },
    /// Creating an eventfd failed.
    #[error("eventfd: {0}")]
    EventFd(std::io::Error),
}

/// Copies `data.len()` bytes of a config-space image from `offset`; bytes past the image (or
/// past `u64`/`usize`) read as 0, as a guest reading beyond the config space sees.
pub(crate) fn read_config_image(img: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = offset
            .checked_add(i as u64)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| img.get(o).copied())
            .unwrap_or(0);
    }
}

/// A virtio device model: everything a transport (in-process VMM, vhost-user) needs.
///
/// Methods take `&self`; implementations keep their state behind their own locks so one device
/// can be shared between a transport thread and the owner's handles. None of them may block on
/// the guest or panic on guest data.
pub trait VirtioDevice: Send + Sync + 'static {
    /// The virtio device id (18 for input, 3 for console).
    fn device_type(&self) -> u32;
    /// Number of virtqueues.
    fn num_queues(&self) -> usize;
    /// Largest queue size the device accepts.
    fn max_queue_size(&self) -> u16;
    /// Device feature bits offered to the driver (transport bits such as
    /// [`VIRTIO_F_VERSION_1`] included).
    fn features(&self) -> u64;
    /// The driver acknowledged these features.
    fn ack_features(&self, features: u64) {
        let _ = features;
    }
    /// Size of the device's config space in bytes.
    fn config_size(&self) -> usize;
    /// Reads config space at `offset`; bytes beyond the config space read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes config space at `offset`; read-only and out-of-range bytes are ignored.
    fn write_config(&self, offset: u64, data: &[u8]);
    /// The driver set DRIVER_OK / the transport has ready queues: start delivering.
    fn activate(&self);
    /// Whether the device is currently active (driver present, queues ready).
    fn is_active(&self) -> bool;
    /// Processes queue `index` after the driver notified it, or after the device's own
    /// [`wake_event`](Self::wake_event) fired. Returns whether the driver must be interrupted
    /// (notification suppression already applied).
    fn process_queue<M: GuestMemory>(
        &self,
        index: usize,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, DeviceError>;
    /// An eventfd the device signals when it has work of its own (for example new input
    /// events); the transport polls it and then calls [`process_queue`](Self::process_queue)
    /// for every ready queue.
    fn wake_event(&self) -> Option<&EventFd>;
    /// Device reset: forget queue state and pending work, back to power-on config.
    fn reset(&self);
}
