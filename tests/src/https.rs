//! HTTP/HTTPS test servers and certificates (being written).
