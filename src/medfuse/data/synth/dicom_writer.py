"""DICOM files for synthetic radiographs: DX, MONOCHROME2, 12 bits in 16, rescale and window.

Stored values are ``round(image * 4095)``; with Rescale Intercept -1024 and slope 1 the rescaled
range is [-1024, 3071], and the header window (center 1024, width 4096, LINEAR) maps that range
exactly back onto [0, 1], so :func:`medfuse.data.dicom.read_dicom` returns the drawn image.
UIDs are derived from the seed and study, so the same seed writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.core import require

BITS_STORED = 12
RESCALE_INTERCEPT = -1024.0
WINDOW_CENTER = 1024.0
WINDOW_WIDTH = 4096.0
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def write_chest_dicom(
    path: str | Path,
    image: np.ndarray,
    *,
    patient_id: str,
    study_id: str,
    sex: str,
    age: int,
    view: str,
    pixel_spacing_mm: float,
    seed: int,
) -> Path:
    """Write ``image`` ``(H, W)`` float in [0, 1] as a DX DICOM file; return its path."""
    pydicom = require("pydicom", extra="dicom", purpose="writing DICOM files")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    def uid(kind: str) -> UID:
        return generate_uid(entropy_srcs=["medfuse-synth", str(seed), study_id, kind])

    sop_uid = uid("sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DX_FOR_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UID(DX_FOR_PRESENTATION)
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = study_id[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientSex = sex
    ds.PatientAge = f"{int(age):03d}Y"
    ds.Manufacturer = "medfuse synthetic"

    stored = np.round(np.clip(image, 0.0, 1.0) * (2**BITS_STORED - 1)).astype("<u2")
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    spacing = f"{pixel_spacing_mm:.4f}"
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1.0
    ds.RescaleType = "US"
    ds.WindowCenter = WINDOW_CENTER
    ds.WindowWidth = WINDOW_WIDTH
    ds.VOILUTFunction = "LINEAR"
    ds.PixelData = stored.tobytes()

    path = Path(path)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
