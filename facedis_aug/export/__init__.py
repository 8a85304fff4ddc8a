"""Stage 4: ONNX export of the generator and the view head, and the bundle folder.

    from facedis_aug.export.onnx import export_generator, OnnxGenerator
    from facedis_aug.export.stage import run_export_stage, export_bundle_onnx
"""
