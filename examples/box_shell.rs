fn main() {
    let b = sshcc::throwaway_box::ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", "/tmp/cl2")
        .start()
        .unwrap();
    println!("{}", b.ssh_command());
    std::thread::sleep(std::time::Duration::from_secs(60));
}
