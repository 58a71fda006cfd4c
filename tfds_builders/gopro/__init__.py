"""GoPro_Large deblurring dataset (manual download). Builder: `gopro_dataset_builder.Builder`."""
