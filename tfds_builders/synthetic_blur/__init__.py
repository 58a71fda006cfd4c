"""synthetic_blur deblurring dataset (manual download). Builder: `synthetic_blur_dataset_builder.Builder`."""
