//! # oa-events-socketio
//!
//! The Socket.IO sink of oa's event layer (mode SOCKETIO, the default, and BOTH): a
//! socketioxide layer mounted on the HTTP server at `/socket.io/` that delivers catalog events
//! to authenticated clients in their user's room, with replay after reconnect.
//!
//! Not built yet: see the "Socket.IO event delivery" issue. Nothing in this crate is
//! functional today.
