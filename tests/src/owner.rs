//! Which process opened a loopback connection: the proxy asks this of every connection it
//! accepts, so it can cut node A off from node B while A's clients (and B's) still get
//! through, with no root and no network namespaces.
//!
//! Linux only: the connecting socket is found in `/proc/net/tcp{,6}` by its two ports
//! (its local port is the accepted connection's peer port, its remote port the proxy's
//! listening port), which gives its inode; the process holding that inode is found among
//! the candidates' `/proc/<pid>/fd` links (`socket:[inode]`).

use std::fs;

/// The candidate (of `(pid, label)`) whose process holds the client end of the loopback
/// connection from `peer_port` to `listen_port`; `None` if none does (or it is gone).
pub fn connection_owner<L: Copy>(
    peer_port: u16,
    listen_port: u16,
    candidates: &[(u32, L)],
) -> Option<L> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .find_map(|table| socket_inode(&table, peer_port, listen_port))?;
    let link = format!("socket:[{inode}]");
    candidates.iter().find_map(|&(pid, label)| {
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.filter_map(Result::ok)
            .any(|fd| {
                fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == link.as_str())
            })
            .then_some(label)
    })
}

/// The inode of the socket in a `/proc/net/tcp` table whose local port is `local_port`
/// and remote port `remote_port`.
fn socket_inode(table: &str, local_port: u16, remote_port: u16) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |field: &str| {
            let (_, hex) = field.rsplit_once(':')?;
            u16::from_str_radix(hex, 16).ok()
        };
        if port(fields.get(1)?)? != local_port || port(fields.get(2)?)? != remote_port {
            return None;
        }
        fields.get(9)?.parse().ok().filter(|&inode| inode != 0)
    })
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn finds_the_process_that_connected() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen_port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let me = std::process::id();
        assert_eq!(
            connection_owner(peer.port(), listen_port, &[(1, "init"), (me, "me")]),
            Some("me")
        );
        assert_eq!(
            connection_owner(peer.port(), listen_port, &[(1, "init")]),
            None
        );
        // A connection that does not exist belongs to nobody.
        assert_eq!(connection_owner(1, listen_port, &[(me, "me")]), None);
    }

    #[test]
    fn reads_the_kernel_table_format() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            \x20  0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n\
            \x20  1: 0100007F:C350 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 20 4 30 10 -1\n";
        assert_eq!(socket_inode(table, 0xC350, 0x9C40), Some(2222));
        assert_eq!(socket_inode(table, 0x9C40, 0xC350), None);
    }
}
