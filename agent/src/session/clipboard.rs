//! X11 clipboard bridge (not written yet).
