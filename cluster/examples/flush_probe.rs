use hodei_cluster::{SledStorage, Storage, WriteBatch};
use std::time::Instant;
fn main() {
    let dir = std::env::args().nth(1).unwrap_or("/tmp/flushprobe".into());
    let _ = std::fs::remove_dir_all(&dir);
    let storage = SledStorage::open(std::path::Path::new(&dir)).unwrap();
    let log = storage.keyspace("raft_log").unwrap();
    let state = storage.keyspace("state").unwrap();
    let n = 500u64;
    let started = Instant::now();
    for i in 0..n {
        let mut b = WriteBatch::new();
        b.put(i.to_be_bytes().to_vec(), vec![7u8; 30 * 300]);
        log.write(b).unwrap();
        log.flush().unwrap();
        let mut s = WriteBatch::new();
        s.put(format!("k{}", i % 100).into_bytes(), vec![1u8; 300]);
        state.write(s).unwrap();
    }
    let per = started.elapsed() / n as u32;
    println!("write+flush per append: {per:?}");
    let started = Instant::now();
    for _ in 0..n {
        log.flush().unwrap();
    }
    println!("empty flush: {:?}", started.elapsed() / n as u32);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .open("/tmp/fsync_probe")
        .unwrap();
    use std::io::Write;
    let started = Instant::now();
    for _ in 0..n {
        (&f).write_all(&[1u8; 9000]).unwrap();
        f.sync_data().unwrap();
    }
    println!("raw write+fdatasync: {:?}", started.elapsed() / n as u32);
}
