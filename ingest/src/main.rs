fn main() {
    eprintln!("{}", ingest::NOT_YET_BUILT);
    std::process::exit(2);
}
