//! File transfer into the user's download folder (not written yet).
