//! `service_syslog` (iLogtail's name and options): syslog over TCP or UDP. The parts that do
//! not need a socket live here first: [`message`] parses one message by `ParseProtocol`, and
//! [`framing`] cuts a TCP stream into messages. The listener that feeds them is built on the
//! runtime's service inputs.

pub mod framing;
pub mod message;
