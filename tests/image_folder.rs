//! `--format images`: a folder of PNGs and JPEGs of mixed sizes (and one
//! corrupt file) loads in sorted order with the corrupt file named and
//! skipped, `--strict` refuses it, an empty folder is an error, the cache is
//! reused and then invalidated by a changed file, `vdvae data images` writes
//! an .npy that `--format npy` reads back identically, and `vdvae train`
//! trains on a folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{GrayImage, Rgb, RgbImage};
use vdvae::data::{read_image_folder, read_images, CacheUse, DataFormat, FolderOptions};

fn vdvae(args: &[&str], cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vdvae"))
        .args(args)
        .env("VDVAE_CACHE", cache)
        .output()
        .unwrap()
}

/// A fresh empty folder for `name`.
fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vdvae-images-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gradient with a bright bar, so resizing and cropping have something to keep.
fn rgb(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let bar = if x == w / 2 { 255 } else { 0 };
        Rgb([(x * 255 / w) as u8 ^ seed, (y * 255 / h) as u8, bar])
    })
}

/// PNGs and JPEGs of mixed sizes in nested folders, one corrupt PNG and a
/// text file (ignored); returns the folder and the corrupt file's path.
fn mixed_folder(name: &str) -> (PathBuf, PathBuf) {
    let dir = tmp_dir(name);
    for sub in ["a", "b/deep"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    rgb(40, 30, 0).save(dir.join("a/wide.png")).unwrap();
    rgb(20, 50, 7).save(dir.join("b/tall.jpg")).unwrap();
    rgb(64, 64, 3).save(dir.join("b/deep/square.JPEG")).unwrap();
    GrayImage::from_fn(32, 32, |x, y| image::Luma([(x * 8 + y) as u8]))
        .save(dir.join("grey.png"))
        .unwrap();
    let corrupt = dir.join("a/broken.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a picture").unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    (dir, corrupt)
}

fn options(size: usize, channels: usize, cache: Option<&Path>) -> FolderOptions {
    FolderOptions {
        size,
        channels,
        strict: false,
        cache_dir: cache.map(Path::to_path_buf),
    }
}

#[test]
fn a_mixed_folder_loads_in_path_order_with_the_corrupt_file_skipped() {
    let (dir, corrupt) = mixed_folder("mixed");
    let got = read_image_folder(dir.to_str().unwrap(), &options(16, 3, None)).unwrap();
    let set = &got.images;
    assert_eq!((set.n, set.h, set.w, set.c), (4, 16, 16, 3));
    assert_eq!(got.skipped.len(), 1, "{:?}", got.skipped);
    assert_eq!(got.skipped[0].path, corrupt.display().to_string());
    assert_eq!(got.cache, CacheUse::Off);
    // Sorted paths: a/wide.png, b/deep/square.JPEG, b/tall.jpg, grey.png. The
    // wide image's centre column holds the bright bar: its crop is centred.
    let wide = set.image(0);
    let blue = |x: usize, y: usize| wide[(y * 16 + x) * 3 + 2];
    assert!(blue(8, 8) > 60 && blue(1, 8) < 30, "{} {}", blue(8, 8), blue(1, 8));
    // A grey image already at the size passes unchanged.
    let grey = read_image_folder(dir.to_str().unwrap(), &options(32, 1, None)).unwrap();
    let want: Vec<u8> = (0..32 * 32).map(|i| ((i % 32) * 8 + i / 32) as u8).collect();
    assert_eq!(grey.images.image(3), &want[..]);
}

#[test]
fn strict_refuses_the_corrupt_file_and_an_empty_folder_is_an_error() {
    let (dir, corrupt) = mixed_folder("strict");
    let strict = FolderOptions {
        strict: true,
        ..options(8, 1, None)
    };
    let err = read_image_folder(dir.to_str().unwrap(), &strict)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&corrupt.display().to_string()) && err.contains("--strict"),
        "{err}"
    );

    let empty = tmp_dir("empty");
    std::fs::write(empty.join("readme.txt"), "no pictures here").unwrap();
    let err = read_image_folder(empty.to_str().unwrap(), &options(8, 1, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no PNG or JPEG files"), "{err}");
    let err = read_image_folder("/no/such/folder", &options(8, 1, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a folder"), "{err}");
}

#[test]
fn the_cache_is_reused_and_invalidated_by_a_changed_file() {
    let (dir, corrupt) = mixed_folder("cache");
    let cache = tmp_dir("cache-dir");
    let (dir_s, o) = (dir.to_str().unwrap(), options(12, 3, Some(&cache)));
    let first = read_image_folder(dir_s, &o).unwrap();
    let CacheUse::Written(path) = first.cache.clone() else {
        panic!("first read: {:?}", first.cache)
    };
    let second = read_image_folder(dir_s, &o).unwrap();
    assert_eq!(second.cache, CacheUse::Hit(path.clone()));
    assert_eq!(second.images, first.images);
    assert_eq!(second.skipped, first.skipped, "the skipped files are remembered");
    // The cache remembers the corrupt file too: --strict still refuses it.
    let strict = FolderOptions {
        strict: true,
        ..o.clone()
    };
    let err = read_image_folder(dir_s, &strict).unwrap_err().to_string();
    assert!(err.contains(&corrupt.display().to_string()), "{err}");
    // A damaged cache is ignored and written anew.
    std::fs::write(&path, b"\x93NUMPY truncated").unwrap();
    let again = read_image_folder(dir_s, &o).unwrap();
    assert_eq!(again.cache, CacheUse::Written(path.clone()));
    assert_eq!(again.images, first.images);
    // Another size is another cache.
    let small = read_image_folder(dir_s, &options(8, 3, Some(&cache))).unwrap();
    assert!(matches!(small.cache, CacheUse::Written(_)), "{:?}", small.cache);

    // A changed file: a new key, decoded anew, the stale cache deleted.
    let changed = dir.join("a/wide.png");
    rgb(40, 30, 99).save(&changed).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&changed)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let third = read_image_folder(dir_s, &o).unwrap();
    let CacheUse::Written(new_path) = third.cache.clone() else {
        panic!("after a change: {:?}", third.cache)
    };
    assert_ne!(new_path, path);
    assert!(!path.exists(), "the stale cache {} is deleted", path.display());
    assert_ne!(third.images.image(0), first.images.image(0));
    assert_eq!(third.images.image(1), first.images.image(1));
}

#[test]
fn data_images_writes_an_npy_that_format_npy_reads_back() {
    let (dir, corrupt) = mixed_folder("cli");
    let cache = tmp_dir("cli-cache");
    let out = tmp_dir("cli-out").join("new/faces.npy"); // its folder is created
    let (dir_s, out_s) = (dir.to_str().unwrap(), out.to_str().unwrap());
    let run = vdvae(
        &[
            "data",
            "images",
            dir_s,
            "--size",
            "24",
            "--channels",
            "1",
            "--out",
            out_s,
        ],
        &cache,
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("skipping {}", corrupt.display())) && stderr.contains("skipped 1 of the 5"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("wrote 4 images of 24x24x1"));
    let npy = read_images(out_s, DataFormat::Npy).unwrap();
    let folder = read_image_folder(dir_s, &options(24, 1, None)).unwrap();
    assert_eq!(npy, folder.images);

    let strict = vdvae(
        &["data", "images", dir_s, "--size", "24", "--out", out_s, "--strict"],
        &cache,
    );
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success() && stderr.contains("broken.png"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let empty = tmp_dir("cli-empty");
    let run = vdvae(
        &["data", "images", empty.to_str().unwrap(), "--size", "8", "--out", out_s],
        &cache,
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("holds no PNG or JPEG files"),
        "{stderr}"
    );
}

#[test]
fn train_runs_on_a_folder_of_images() {
    let (dir, corrupt) = mixed_folder("train");
    let cache = tmp_dir("train-cache");
    let out = tmp_dir("train-out");
    let args = [
        "train",
        "--preset",
        "mnist-tiny",
        "--format",
        "images",
        "--data",
        dir.to_str().unwrap(),
        "--steps",
        "2",
        "--batch",
        "2",
        "--image-every",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = vdvae(&args, &cache);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("skipping {}", corrupt.display())), "{stderr}");
    assert!(stderr.contains("4 images"), "{stderr}");
    assert!(out.join("model.safetensors").exists());
    // The decoded folder was cached for the next run (mnist-tiny: 32x32 grey).
    let cached: Vec<_> = std::fs::read_dir(cache.join("images")).unwrap().flatten().collect();
    assert_eq!(cached.len(), 2, "one .npy and its note: {cached:?}");

    // Again with --strict: the cached folder still names the corrupt file, and
    // the run stops before any step.
    let strict_out = tmp_dir("train-strict-out");
    let mut strict: Vec<&str> = args[..args.len() - 2].to_vec(); // all but --out
    strict.extend(["--strict", "--out", strict_out.to_str().unwrap()]);
    let run = vdvae(&strict, &cache);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("read from the cache"), "{stderr}");
    assert!(
        stderr.contains(&format!("error: {}: cannot read this image", corrupt.display())),
        "{stderr}"
    );
    assert!(!strict_out.join("model.safetensors").exists());
}
